package e2e

import (
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"go.dockerworker.dev/docker-worker/worker/tc"
)

// uploadSources maps each artifact the worker uploaded to where it read it
// from: "layers" (the container's overlay2 layers) or "archive" (the
// Docker archive API).
func uploadSources(we *workerEnv) map[string]string {
	out := map[string]string{}
	for _, r := range we.logs.records("Uploading artifact") {
		name, _ := r["name"].(string)
		from, _ := r["from"].(string)
		out[name] = from
	}
	return out
}

// Artifacts are read from the stopped container's layers (not through the
// archive API) and come out as the archive API gave them: symlinks
// resolve inside the container whether absolute or full of "..", a file
// deleted from an image layer is gone, and a path on a cache volume (not
// in the layers) goes through the archive API.
func TestArtifactsFromLayers(t *testing.T) {
	q := startQueue(t, nil)
	cfg := cacheConfig(t, q, "layerart")
	we := startWorker(t, q, cfg)
	const cache = "docker-worker-garbage-caches-layer-artifacts"
	p := shell(strings.Join([]string{
		"mkdir -p /out/sub /vol/sub",
		"echo in-the-container > /etc/passwd",
		"echo plain > /out/plain.txt",
		"echo deep > /out/sub/deep.bin",
		"ln -s /etc /out/abs",
		"ln -s ../../../../../../etc /out/rel",
		"ln -s /etc/passwd /out/passwd",
		"echo on-the-volume > /vol/sub/v.txt",
		"echo new > /bin/new.txt",
		"rm /bin/busybox",
	}, " && "), 60)
	p["cache"] = map[string]string{cache: "/vol"}
	p["artifacts"] = map[string]any{
		"public/plain.txt": map[string]any{"type": "file", "path": "/out/plain.txt"},
		"public/dir":       map[string]any{"type": "directory", "path": "/out"},
		"public/abs":       map[string]any{"type": "file", "path": "/out/abs/passwd"},
		"public/rel":       map[string]any{"type": "file", "path": "/out/rel/passwd"},
		"public/link":      map[string]any{"type": "file", "path": "/out/passwd"},
		"public/bin":       map[string]any{"type": "directory", "path": "/bin"},
		"public/busybox":   map[string]any{"type": "file", "path": "/bin/busybox"},
		"public/vol.txt":   map[string]any{"type": "file", "path": "/vol/sub/v.txt"},
	}
	id := q.create(t, withScopes(newTask(cfg, p), "docker-worker:cache:"+cache))
	wantState(t, q.waitRun(t, id, 0, 2*time.Minute), 0, tc.StateCompleted, "completed")

	arts := q.artifacts(t, id, 0)
	var names []string
	for n := range arts {
		if !strings.HasPrefix(n, "public/logs/") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	want := []string{"public/abs", "public/bin/new.txt", "public/busybox", "public/dir/plain.txt",
		"public/dir/sub/deep.bin", "public/link", "public/plain.txt", "public/rel", "public/vol.txt"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("artifacts (-want +got):\n%s", diff)
	}
	for n, body := range map[string]string{
		"public/plain.txt":        "plain\n",
		"public/dir/plain.txt":    "plain\n",
		"public/dir/sub/deep.bin": "deep\n",
		"public/abs":              "in-the-container\n",
		"public/rel":              "in-the-container\n",
		"public/bin/new.txt":      "new\n",
		"public/vol.txt":          "on-the-volume\n",
	} {
		if got := q.logOf(t, id, 0, n); got != body {
			t.Errorf("%s = %q, want %q", n, got, body)
		}
	}
	// A final symlink is not followed; a file deleted from the image is missing.
	if a := arts["public/link"]; a.StorageType != "error" {
		t.Errorf("public/link (a symlink) = %+v, want an error artifact", a)
	}
	if r := q.artifactError(t, id, 0, "public/busybox"); r != "file-missing-on-worker" {
		t.Errorf("public/busybox (deleted from an image layer): reason %q", r)
	}
	log := q.logOf(t, id, 0, "")
	mustContain(t, log, `Expected artifact to be a "file" but was "symlink"`,
		`Artifact "public/busybox" not found at "/bin/busybox"`)

	from := uploadSources(we)
	for _, n := range []string{"public/plain.txt", "public/dir/plain.txt", "public/dir/sub/deep.bin", "public/abs", "public/rel", "public/bin/new.txt"} {
		if from[n] != "layers" {
			t.Errorf("%s was read from %q, want the layers", n, from[n])
		}
	}
	if from["public/vol.txt"] != "archive" {
		t.Errorf("public/vol.txt (on a cache volume) was read from %q, want the archive API", from["public/vol.txt"])
	}
}
