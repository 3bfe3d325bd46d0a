package e2e

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	chainoftrust "go.dockerworker.dev/docker-worker/features/chainOfTrust"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// rssBytes reads the resident set size of process pid.
func rssBytes(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// countingHash hashes and counts what is written to it.
type countingHash struct {
	n int64
	h interface {
		io.Writer
		Sum([]byte) []byte
	}
}

func (c *countingHash) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.h.Write(p)
}

// A 1 GiB artifact uploads through the built binary (not under -race) with
// the worker's RSS growing by far less than the artifact: entries are
// streamed and spooled, never held in memory. The artifact arrives intact
// (its sha256 is checked against the chain-of-trust document).
func TestOneGiBArtifact(t *testing.T) {
	dockertestRequire(t)
	const size = 1 << 30
	const bound = 256 << 20
	bin := workerBinary(t)
	q := startQueue(t, nil)
	cfg := q.workerConfig("bigartifact")
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "cot.key")
	os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(priv)), 0o600)
	cfg.Ed25519SigningKeyLocation = keyFile
	conf := writeConfig(t, cfg)

	var out logSink
	cmd := exec.Command(bin, "run", "--config", conf)
	cmd.Env = append(os.Environ(), "TASKCLUSTER_ROOT_URL=", "TASKCLUSTER_CLIENT_ID=", "TASKCLUSTER_ACCESS_TOKEN=", "TMPDIR="+t.TempDir())
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("worker output:\n%s", out.String())
		}
	})
	pid := cmd.Process.Pid

	// Warm up with a small task so the baseline includes a task's usual
	// footprint (Docker client, live log server, feature state).
	warm := q.create(t, newTask(cfg, shell("echo warm", 60)))
	wantState(t, q.waitRun(t, warm, 0, 2*time.Minute), 0, tc.StateCompleted, "")
	time.Sleep(500 * time.Millisecond)
	base, err := rssBytes(pid)
	if err != nil {
		t.Fatal(err)
	}

	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if r, err := rssBytes(pid); err == nil && r > peak.Load() {
				peak.Store(r)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()

	p := shell(fmt.Sprintf("mkdir -p /out && head -c %d /dev/urandom > /out/big.zst && ls -l /out", size), 900)
	p["artifacts"] = map[string]any{"public/big.zst": map[string]any{"type": "file", "path": "/out/big.zst"}}
	p["features"] = map[string]bool{"chainOfTrust": true}
	id := q.create(t, newTask(cfg, p))
	s := q.waitRun(t, id, 0, 10*time.Minute)
	close(stop)
	<-sampled
	wantState(t, s, 0, tc.StateCompleted, "")

	growth := peak.Load() - base
	t.Logf("worker RSS: baseline %.1f MiB, peak %.1f MiB, growth %.1f MiB while uploading a 1 GiB artifact",
		float64(base)/(1<<20), float64(peak.Load())/(1<<20), float64(growth)/(1<<20))
	if growth > bound {
		t.Errorf("worker RSS grew by %d MiB, bound %d MiB", growth>>20, bound>>20)
	}

	// The artifact arrived whole: its size, and its sha256 as the worker
	// recorded it for chain of trust.
	var docBuf strings.Builder
	if _, err := q.admin.Download(t.Context(), q.admin.ArtifactURL(id, 0, "public/chain-of-trust.json"), &docBuf); err != nil {
		t.Fatal(err)
	}
	var doc chainoftrust.Document
	if err := json.Unmarshal([]byte(docBuf.String()), &doc); err != nil {
		t.Fatal(err)
	}
	ch := &countingHash{h: sha256.New()}
	if _, err := q.admin.Download(t.Context(), q.admin.ArtifactURL(id, 0, "public/big.zst"), ch); err != nil {
		t.Fatal(err)
	}
	if ch.n != size {
		t.Errorf("downloaded %d bytes, want %d", ch.n, size)
	}
	if got, want := hex.EncodeToString(ch.h.Sum(nil)), doc.Artifacts["public/big.zst"].SHA256; got != want {
		t.Errorf("sha256 %s, chain of trust says %s", got, want)
	}
	if a := q.artifacts(t, id, 0)["public/big.zst"]; a.ContentType != "application/octet-stream" {
		t.Errorf("content type %q", a.ContentType)
	}
}
