package e2e

import (
	"bytes"
	"encoding/hex"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/localqueue"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// file_artifact_test: every case, in few tasks.
func TestFileArtifacts(t *testing.T) {
	q := startQueue(t, nil)
	cfg := q.workerConfig("fileart")
	startFullWorker(t, q, cfg)
	expires := time.Now().Add(12 * time.Hour).UTC().Truncate(time.Millisecond)

	t.Run("extract, compression, content types, expiry", func(t *testing.T) {
		p := shell(strings.Join([]string{
			"mkdir -p /artifacts",
			"echo xfoo > /xfoo.txt",
			"echo bar > /bar.txt",
			"echo xfoo > /artifacts/image.dmg",
			"head -c 1000000 /dev/zero | tr '\\0' 'a' > /artifacts/test.html",
			"printf '\\000\\001\\002binary' > /artifacts/binary",
			"echo hello > /artifacts/hello.txt",
			"echo world > /artifacts/world.jpg",
			"echo root > username.txt",
		}, " && "), 60)
		p["artifacts"] = map[string]any{
			"public/xfoo.txt":     map[string]any{"type": "file", "path": "/xfoo.txt", "expires": expires.Format(time.RFC3339Nano)},
			"public/bar":          map[string]any{"type": "file", "path": "/bar.txt", "expires": expires.Format(time.RFC3339Nano)},
			"public/image.dmg":    map[string]any{"type": "file", "path": "/artifacts/image.dmg"},
			"public/test.html":    map[string]any{"type": "file", "path": "/artifacts/test.html"},
			"public/binary":       map[string]any{"type": "file", "path": "/artifacts/binary"},
			"public/hello.txt":    map[string]any{"type": "file", "path": "/artifacts/hello.txt"},
			"public/world.jpg":    map[string]any{"type": "file", "path": "/artifacts/world.jpg"},
			"public/username.txt": map[string]any{"type": "file", "path": "username.txt"},
		}
		def := newTask(cfg, p)
		id := q.create(t, def)
		s := q.waitRun(t, id, 0, 2*time.Minute)
		wantState(t, s, 0, tc.StateCompleted, "")
		arts := q.artifacts(t, id, 0)
		var names []string
		for n := range arts {
			names = append(names, n)
		}
		sort.Strings(names)
		want := []string{"public/bar", "public/binary", "public/hello.txt", "public/image.dmg", "public/logs/live.log",
			"public/logs/live_backing.log", "public/test.html", "public/username.txt", "public/world.jpg", "public/xfoo.txt"}
		if diff := cmp.Diff(want, names); diff != "" {
			t.Errorf("artifacts (-want +got):\n%s", diff)
		}
		// extract artifact: given expiry, contents.
		for _, n := range []string{"public/xfoo.txt", "public/bar"} {
			if !arts[n].Expires.Equal(expires) {
				t.Errorf("%s expires %v, want %v", n, arts[n].Expires, expires)
			}
		}
		if got := q.logOf(t, id, 0, "public/bar"); got != "bar\n" {
			t.Errorf("bar = %q", got)
		}
		// extract txt compressed: the exact gzip bytes, header included.
		raw, h := q.rawArtifact(t, id, 0, "public/xfoo.txt")
		if got := hex.EncodeToString(raw); got != "1f8b0800000000000003ab48cbcfe70200a7e6f65005000000" {
			t.Errorf("xfoo.txt stored as %s", got)
		}
		if h.Get("Content-Encoding") != "gzip" {
			t.Errorf("xfoo.txt Content-Encoding %q", h.Get("Content-Encoding"))
		}
		// extract dmg not compressed.
		raw, h = q.rawArtifact(t, id, 0, "public/image.dmg")
		if string(raw) != "xfoo\n" || h.Get("Content-Encoding") != "" {
			t.Errorf("image.dmg stored as %q (%q)", raw, h.Get("Content-Encoding"))
		}
		// artifact expiration defaulted to task.expires.
		taskExp, _ := time.Parse(time.RFC3339, def["expires"].(string))
		if !arts["public/image.dmg"].Expires.Equal(taskExp) {
			t.Errorf("image.dmg expires %v, want the task's %v", arts["public/image.dmg"].Expires, taskExp)
		}
		// upload 1mb artifact.
		if ct := arts["public/test.html"].ContentType; ct != "text/html" {
			t.Errorf("test.html content type %q", ct)
		}
		if got := q.logOf(t, id, 0, "public/test.html"); got != strings.Repeat("a", 1000000) {
			t.Errorf("test.html has %d bytes", len(got))
		}
		// upload binary artifact.
		if ct := arts["public/binary"].ContentType; ct != "application/octet-stream" {
			t.Errorf("binary content type %q", ct)
		}
		if got := q.logOf(t, id, 0, "public/binary"); got != "\x00\x01\x02binary" {
			t.Errorf("binary = %q", got)
		}
		// automatic gzip compression.
		if _, h := q.rawArtifact(t, id, 0, "public/hello.txt"); h.Get("Content-Encoding") != "gzip" {
			t.Errorf("hello.txt Content-Encoding %q", h.Get("Content-Encoding"))
		}
		if raw, h := q.rawArtifact(t, id, 0, "public/world.jpg"); h.Get("Content-Encoding") != "" || string(raw) != "world\n" {
			t.Errorf("world.jpg %q Content-Encoding %q", raw, h.Get("Content-Encoding"))
		}
		// both missing and found: the relative path resolves in the container.
		if got := q.logOf(t, id, 0, "public/username.txt"); got != "root\n" || arts["public/username.txt"].StorageType != "s3" {
			t.Errorf("username.txt = %q (%s)", got, arts["public/username.txt"].StorageType)
		}
	})

	t.Run("directory as file, missing, found", func(t *testing.T) {
		p := shell("echo found > /found.txt", 60)
		p["artifacts"] = map[string]any{
			"public/etc":            map[string]any{"type": "file", "path": "/etc"},
			"public/my-missing.txt": map[string]any{"type": "file", "path": "/this-file-is-missing.txt"},
			"public/found.txt":      map[string]any{"type": "file", "path": "/found.txt"},
		}
		id := q.create(t, newTask(cfg, p))
		s := q.waitRun(t, id, 0, 2*time.Minute)
		wantState(t, s, 0, tc.StateCompleted, "")
		log := q.logOf(t, id, 0, "")
		mustContain(t, log,
			`[taskcluster:error] Error uploading "public/etc". Expected artifact to be a "file" but was "directory"`,
			`Artifact "public/my-missing.txt" not found at "/this-file-is-missing.txt"`)
		arts := q.artifacts(t, id, 0)
		for n, st := range map[string]string{"public/etc": "error", "public/my-missing.txt": "error", "public/found.txt": "s3"} {
			if arts[n].StorageType != st {
				t.Errorf("%s storageType %q, want %q", n, arts[n].StorageType, st)
			}
		}
		if a := q.artifactError(t, id, 0, "public/my-missing.txt"); a != "file-missing-on-worker" {
			t.Errorf("missing artifact reason %q", a)
		}
		if a := q.artifactError(t, id, 0, "public/etc"); a != "invalid-resource-on-worker" {
			t.Errorf("mismatched artifact reason %q", a)
		}
	})
}

// artifactError returns the reason of an error artifact.
func (q *queueEnv) artifactError(t *testing.T, taskID string, runID int, name string) string {
	t.Helper()
	var body struct {
		StorageType string `json:"storageType"`
		Reason      string `json:"reason"`
	}
	path := "/task/" + tc.PathEscape(taskID) + "/runs/0/artifact-content/" + tc.PathEscape(name)
	if err := q.admin.Request(t.Context(), "queue", http.MethodGet, path, nil, nil, &body); err != nil {
		t.Fatalf("artifact %s: %v", name, err)
	}
	return body.Reason
}

// directory_artifact_test.
func TestDirectoryArtifacts(t *testing.T) {
	q := startQueue(t, nil)
	cfg := q.workerConfig("dirart")
	startFullWorker(t, q, cfg)

	t.Run("attempt to upload file as directory", func(t *testing.T) {
		p := shell("echo xfoo > /xfoo", 60)
		p["artifacts"] = map[string]any{"public/xfoo": map[string]any{"type": "directory", "path": "/xfoo"}}
		id := q.create(t, newTask(cfg, p))
		s := q.waitRun(t, id, 0, 2*time.Minute)
		wantState(t, s, 0, tc.StateCompleted, "")
		if a := q.artifacts(t, id, 0)["public/xfoo"]; a.StorageType != "error" {
			t.Errorf("public/xfoo = %+v", a)
		}
	})

	for _, name := range []string{"public/dir", "public/dir/"} {
		t.Run("upload an entire directory as "+name, func(t *testing.T) {
			p := shell(strings.Join([]string{
				"mkdir -p /xfoo/wow /xfoo/empty",
				"echo '<html>' > /xfoo/test.html",
				"echo bar > /xfoo/wow/bar.txt",
				"head -c 1000000 /dev/urandom > /xfoo/wow/another.txt",
				"ln -s /etc/passwd /xfoo/link",
				"cp /xfoo/wow/another.txt /another.copy",
			}, " && "), 60)
			p["artifacts"] = map[string]any{
				name:           map[string]any{"type": "directory", "path": "/xfoo/"},
				"public/check": map[string]any{"type": "file", "path": "/another.copy"},
			}
			id := q.create(t, newTask(cfg, p))
			s := q.waitRun(t, id, 0, 2*time.Minute)
			wantState(t, s, 0, tc.StateCompleted, "")
			var got []string
			for n := range q.artifacts(t, id, 0) {
				if strings.HasPrefix(n, "public/dir") {
					got = append(got, n)
				}
			}
			sort.Strings(got)
			want := []string{"public/dir/test.html", "public/dir/wow/another.txt", "public/dir/wow/bar.txt"}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("directory artifacts (-want +got):\n%s", diff)
			}
			if b := q.logOf(t, id, 0, "public/dir/wow/bar.txt"); b != "bar\n" {
				t.Errorf("bar.txt = %q", b)
			}
			if b := q.logOf(t, id, 0, "public/dir/test.html"); b != "<html>\n" {
				t.Errorf("test.html = %q", b)
			}
			big := q.logOf(t, id, 0, "public/dir/wow/another.txt")
			if len(big) != 1000000 || big != q.logOf(t, id, 0, "public/check") {
				t.Errorf("1,000,000-byte file not intact (%d bytes)", len(big))
			}
		})
	}
}

// features_test "disabled feature defaults": with artifacts disabled on the
// worker, a payload that lists artifacts completes and none are uploaded.
// (The task log is always uploaded here; see the README.)
func TestDisabledFeatureDefaults(t *testing.T) {
	q := startQueue(t, nil)
	cfg := q.workerConfig("disabled")
	off := false
	cfg.Features["artifacts"] = config.FeatureConfig{Enabled: &off}
	startFullWorker(t, q, cfg)
	p := shell("echo xfoo > /xfoo.txt", 60)
	p["artifacts"] = map[string]any{"public/xfoo.txt": map[string]any{"type": "file", "path": "/xfoo.txt"}}
	id := q.create(t, newTask(cfg, p))
	s := q.waitRun(t, id, 0, 2*time.Minute)
	wantState(t, s, 0, tc.StateCompleted, "")
	for n := range q.artifacts(t, id, 0) {
		if !strings.HasPrefix(n, "public/logs/") {
			t.Errorf("artifact %s uploaded with the feature disabled", n)
		}
	}
}

// An upload the storage keeps answering 5xx is retried while the claim
// lasts (at least a minute), then resolves the run exception/worker-shutdown:
// the infrastructure failed, not the task, and the queue retries it. The
// error is in the log, which is uploaded, and the other artifacts are.
func TestArtifactUploadFailure(t *testing.T) {
	var puts bytes.Buffer // only written by the proxy's handler, read after the run
	q := startFlakyQueue(t, func(r *http.Request) bool {
		fail := r.Header.Get("Content-Type") == "application/zip"
		if fail {
			puts.WriteString("x")
		}
		return fail
	}, func(c *localqueue.Config) { c.ClaimTimeout = 20 * time.Second })
	cfg := q.workerConfig("upfail")
	startFullWorker(t, q, cfg)
	p := shell("echo a > /a.zip && echo b > /b.txt", 60)
	p["artifacts"] = map[string]any{
		"public/a.zip": map[string]any{"type": "file", "path": "/a.zip"},
		"public/b.txt": map[string]any{"type": "file", "path": "/b.txt"},
	}
	id := q.create(t, newTask(cfg, p))
	s := q.waitRun(t, id, 0, 3*time.Minute)
	wantState(t, s, 0, tc.StateException, "worker-shutdown")
	log := q.logOf(t, id, 0, "")
	mustContain(t, log, `[taskcluster:error] Error uploading "public/a.zip" artifact.`, "injected failure",
		"[taskcluster:error] Encountered error when uploading artifact(s)",
		"Task has been aborted prematurely. Reason: worker-shutdown",
		"Unsuccessful task run with exit code: -1")
	if got := q.logOf(t, id, 0, "public/b.txt"); got != "b\n" {
		t.Errorf("b.txt = %q", got)
	}
	if puts.Len() < 2 {
		t.Errorf("the failing upload was tried %d times, want retries", puts.Len())
	}
}
