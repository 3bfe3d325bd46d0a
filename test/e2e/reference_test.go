package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	chainoftrust "go.dockerworker.dev/docker-worker/features/chainOfTrust"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/slugid"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// referenceTask reads the task definition (or bare payload) of a reference
// payload file, with its placeholders filled in by replace.
func referenceTask(t *testing.T, file string, replace map[string]string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "shared", "reference", "payloads", file))
	if err != nil {
		t.Fatalf("reference payload (../shared beside the checkout): %v", err)
	}
	var doc struct {
		PayloadOrTask json.RawMessage `json:"payload_or_task"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	text := string(doc.PayloadOrTask)
	for k, v := range replace {
		text = strings.ReplaceAll(text, k, v)
	}
	var def map[string]any
	if err := json.Unmarshal([]byte(text), &def); err != nil {
		t.Fatal(err)
	}
	return def
}

// `docker-worker dev` runs the reference payloads that use task images,
// chain of trust and caches, with their images served locally: 12 (a
// task-image published by an earlier task, chain of trust, artifacts) and
// 13 (a cache purged on exit status 36).
func TestDevRunsReferencePayloads(t *testing.T) {
	dockertestRequire(t)
	bin := workerBinary(t)
	archive, _ := testImageArchive(t)
	cacheDir := t.TempDir()
	conf := filepath.Join(t.TempDir(), "worker.yml")
	if err := os.WriteFile(conf, []byte("cache: {volumeCachePath: "+cacheDir+"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	q, _ := startDev(t, bin, t.TempDir(), "--config", conf)
	dev := config.Default()
	dev.ProvisionerID, dev.WorkerType = "local", "docker"
	expires := time.Now().Add(10 * time.Minute).UTC().Format("2006-01-02T15:04:05.000Z")

	t.Run("12 chain of trust on a task image", func(t *testing.T) {
		holder := q.publish(t, nil, published{name: "public/image.tar", body: archive})
		def := referenceTask(t, "12-docker-worker-test-chain-of-trust.payload.json",
			map[string]string{"csTL863FQYCK82XEFjMhMw": holder, "<now+10min>": expires})
		id := q.create(t, newTask(dev, def["payload"].(map[string]any)))
		wantState(t, q.waitRun(t, id, 0, 2*time.Minute), 0, tc.StateCompleted, "completed")
		doc, _ := q.rawArtifact(t, id, 0, chainoftrust.DocumentName)
		var d chainoftrust.Document
		if err := json.Unmarshal(doc, &d); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"public/xfoo", "public/bar", chainoftrust.CertifiedLog} {
			if d.Artifacts[name].SHA256 == "" {
				t.Errorf("chain of trust lacks %s: %+v", name, d.Artifacts)
			}
		}
		if !strings.HasPrefix(d.Environment.ImageArtifactHash, "sha256:") || d.Environment.ImageHash == "" {
			t.Errorf("environment %+v lacks the image hashes", d.Environment)
		}
	})

	t.Run("13 cache purged on exit status", func(t *testing.T) {
		name := "docker-worker-garbage-caches-tmp-obj-dir-" + strings.ToLower(slugid.Nice()[:8])
		def := referenceTask(t, "13-docker-worker-test-cache-purge-on-exit-status.task.json",
			map[string]string{"docker-worker-garbage-caches-tmp-obj-dir-<timestamp>": name, "taskcluster/test-ubuntu": image})
		task := newTask(dev, def["payload"].(map[string]any))
		task["scopes"] = def["scopes"]
		id := q.create(t, task)
		wantState(t, q.waitRun(t, id, 0, 2*time.Minute), 0, tc.StateFailed, "failed")
		mustContain(t, q.logOf(t, id, 0, ""), `using cache "`+name+`" -> /tmp-obj-dir`, "exit code: 36")
		entries, err := os.ReadDir(filepath.Join(cacheDir, name))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.IsDir() {
				t.Errorf("cache instance %s kept after exit status 36", e.Name())
			}
		}
	})
}
