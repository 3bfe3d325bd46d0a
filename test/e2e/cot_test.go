package e2e

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	chainoftrust "go.dockerworker.dev/docker-worker/features/chainOfTrust"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// chain_of_trust: the exact artifact set, a signature that verifies (in
// process and with `docker-worker cot verify`), matching hashes and the
// environment; nothing for an aborted run.
func TestChainOfTrust(t *testing.T) {
	dc := dockertest.Require(t)
	q := startQueue(t, nil)
	cfg := q.workerConfig("cot")
	cfg.PrivateIP = "169.254.1.1"
	cfg.InstanceID = "test-worker-instance"
	cfg.InstanceType = "r3-superlarge"
	cfg.Region = "us-middle-1a"
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keyDir := t.TempDir()
	cfg.Ed25519SigningKeyLocation = filepath.Join(keyDir, "cot.key")
	os.WriteFile(cfg.Ed25519SigningKeyLocation, []byte(base64.StdEncoding.EncodeToString(priv)+"\n"), 0o600)
	pubFile := filepath.Join(keyDir, "cot.pub")
	os.WriteFile(pubFile, []byte(base64.StdEncoding.EncodeToString(pub)+"\n"), 0o600)
	startFullWorker(t, q, cfg)

	p := shell("echo xfoo > /xfoo && echo bar > /bar && echo 'the log <&>'", 60)
	p["features"] = map[string]bool{"chainOfTrust": true}
	p["artifacts"] = map[string]any{
		"public/xfoo": map[string]any{"type": "file", "path": "/xfoo"},
		"public/bar":  map[string]any{"type": "file", "path": "/bar"},
	}
	id := q.create(t, newTask(cfg, p))
	wantState(t, q.waitRun(t, id, 0, 2*time.Minute), 0, tc.StateCompleted, "")

	var names []string
	for n := range q.artifacts(t, id, 0) {
		names = append(names, n)
	}
	sort.Strings(names)
	want := []string{"public/bar", "public/chain-of-trust.json", "public/chain-of-trust.json.sig",
		"public/logs/certified.log", "public/logs/live.log", "public/logs/live_backing.log", "public/xfoo"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Fatalf("artifacts (-want +got):\n%s", diff)
	}

	// Download the set as a consumer would (content-encoding undone).
	set := t.TempDir()
	for _, n := range []string{"public/chain-of-trust.json", "public/chain-of-trust.json.sig", "public/logs/certified.log", "public/xfoo", "public/bar"} {
		var b bytes.Buffer
		if _, err := q.admin.Download(t.Context(), q.admin.ArtifactURL(id, 0, n), &b); err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(set, filepath.FromSlash(n))
		os.MkdirAll(filepath.Dir(dst), 0o755)
		os.WriteFile(dst, b.Bytes(), 0o600)
	}
	read := func(n string) []byte {
		b, _ := os.ReadFile(filepath.Join(set, filepath.FromSlash(n)))
		return b
	}
	doc, err := chainoftrust.Verify(read("public/chain-of-trust.json"), read("public/chain-of-trust.json.sig"), pub)
	if err != nil {
		t.Fatalf("signature: %v", err)
	}
	sum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	live := q.logOf(t, id, 0, "")
	if string(read("public/logs/certified.log")) != live {
		t.Error("certified.log differs from the live log")
	}
	wantHashes := map[string]chainoftrust.ArtifactHash{
		"public/xfoo":               {SHA256: sum([]byte("xfoo\n"))},
		"public/bar":                {SHA256: sum([]byte("bar\n"))},
		"public/logs/certified.log": {SHA256: sum([]byte(live))},
	}
	if diff := cmp.Diff(wantHashes, doc.Artifacts); diff != "" {
		t.Errorf("artifact hashes (-want +got):\n%s", diff)
	}
	imageID, err := dc.EnsureImage(t.Context(), image, io.Discard, docker.PullPolicy{Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	wantEnv := chainoftrust.Environment{PublicIPAddress: "127.0.0.1", PrivateIPAddress: "169.254.1.1", ImageHash: imageID,
		InstanceID: "test-worker-instance", InstanceType: "r3-superlarge", Region: "us-middle-1a"}
	if diff := cmp.Diff(wantEnv, doc.Environment); diff != "" {
		t.Errorf("environment (-want +got):\n%s", diff)
	}
	if doc.TaskID != id || doc.RunID != 0 || doc.WorkerGroup != cfg.WorkerGroup || doc.WorkerID != cfg.WorkerID {
		t.Errorf("ids %s/%d %s/%s", doc.TaskID, doc.RunID, doc.WorkerGroup, doc.WorkerID)
	}
	def, err := q.admin.Task(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	var gotTask, wantTask any
	json.Unmarshal(doc.Task, &gotTask)
	json.Unmarshal(def.Raw, &wantTask)
	if diff := cmp.Diff(wantTask, gotTask); diff != "" {
		t.Errorf("task definition (-want +got):\n%s", diff)
	}

	// The same set through the command operators use.
	bin := workerBinary(t)
	out, err := exec.Command(bin, "cot", "verify", "--public-key", pubFile, set).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "3 verified, 0 missing, 0 failed") {
		t.Errorf("cot verify: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(set, "public", "bar"), []byte("tampered\n"), 0o600)
	if out, err := exec.Command(bin, "cot", "verify", "--public-key", pubFile, set).CombinedOutput(); err == nil {
		t.Errorf("cot verify accepted a tampered artifact:\n%s", out)
	}

	t.Run("aborted run has no chain of trust", func(t *testing.T) {
		p := shell("echo started; sleep 30", 2)
		p["features"] = map[string]bool{"chainOfTrust": true}
		id := q.create(t, newTask(cfg, p))
		wantState(t, q.waitRun(t, id, 0, 2*time.Minute), 0, tc.StateFailed, "")
		for n := range q.artifacts(t, id, 0) {
			if strings.Contains(n, "chain-of-trust") || strings.Contains(n, "certified") {
				t.Errorf("%s after a maxRunTime abort", n)
			}
		}
	})
}
