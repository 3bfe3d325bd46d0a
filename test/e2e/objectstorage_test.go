package e2e

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	chainoftrust "go.dockerworker.dev/docker-worker/features/chainOfTrust"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// With artifacts.storageType object, every upload (payload artifacts, logs,
// chain of trust) goes through the object service and reads back intact;
// gzip-encoded bodies are stored decoded, and the chain-of-trust hashes
// match what downloads return.
func TestObjectStorage(t *testing.T) {
	q := startQueue(t, nil)
	cfg := q.workerConfig("objects")
	cfg.Artifacts.StorageType = "object"
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	cfg.Ed25519SigningKeyLocation = filepath.Join(t.TempDir(), "cot.key")
	os.WriteFile(cfg.Ed25519SigningKeyLocation, []byte(base64.StdEncoding.EncodeToString(priv)), 0o600)
	startFullWorker(t, q, cfg)

	p := shell("mkdir -p /d/sub && echo xfoo > /xfoo.txt && echo inner > /d/sub/inner.txt && head -c 300000 /dev/urandom > /d/blob.zst && echo logged", 60)
	p["artifacts"] = map[string]any{
		"public/xfoo.txt": map[string]any{"type": "file", "path": "/xfoo.txt"},
		"public/d":        map[string]any{"type": "directory", "path": "/d"},
	}
	p["features"] = map[string]bool{"chainOfTrust": true}
	id := q.create(t, newTask(cfg, p))
	wantState(t, q.waitRun(t, id, 0, 2*time.Minute), 0, tc.StateCompleted, "")

	arts := q.artifacts(t, id, 0)
	for _, n := range []string{"public/xfoo.txt", "public/d/sub/inner.txt", "public/d/blob.zst", "public/logs/live_backing.log",
		"public/logs/certified.log", "public/chain-of-trust.json", "public/chain-of-trust.json.sig"} {
		if arts[n].StorageType != "object" {
			t.Errorf("%s: storageType %q, want object", n, arts[n].StorageType)
		}
	}
	if arts["public/logs/live.log"].StorageType != "link" {
		t.Errorf("live.log %+v", arts["public/logs/live.log"])
	}
	if got := q.logOf(t, id, 0, "public/xfoo.txt"); got != "xfoo\n" {
		t.Errorf("xfoo.txt = %q", got)
	}
	if got := q.logOf(t, id, 0, "public/d/sub/inner.txt"); got != "inner\n" {
		t.Errorf("inner.txt = %q", got)
	}
	live := q.logOf(t, id, 0, "")
	mustContain(t, live, "logged", "Successful task run")

	get := func(n string) []byte {
		var b bytes.Buffer
		if _, err := q.admin.Download(t.Context(), q.admin.ArtifactURL(id, 0, n), &b); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	doc, err := chainoftrust.Verify(get("public/chain-of-trust.json"), get("public/chain-of-trust.json.sig"), pub)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"public/xfoo.txt", "public/d/sub/inner.txt", "public/d/blob.zst", "public/logs/certified.log"} {
		sum := sha256.Sum256(get(n))
		if got := doc.Artifacts[n].SHA256; got != hex.EncodeToString(sum[:]) {
			t.Errorf("%s: chain of trust sha256 %s, content %x", n, got, sum)
		}
	}
	if !strings.Contains(string(get("public/logs/certified.log")), "logged") {
		t.Error("certified log lacks the output")
	}
}
