package e2e

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	chainoftrust "go.dockerworker.dev/docker-worker/features/chainOfTrust"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// docker-worker dev signs chain of trust with a key it makes in its data
// directory: a chainOfTrust task completes, and its signature verifies
// with that key; a second start keeps the key.
func TestDevChainOfTrust(t *testing.T) {
	dockertestRequire(t)
	bin := workerBinary(t)
	dataDir := t.TempDir()
	for round := range 2 {
		q, stop := startDev(t, bin, dataDir)
		cfg := config.Default()
		cfg.ProvisionerID, cfg.WorkerType = "local", "docker"
		def := newTask(cfg, shell("echo signed", 60))
		def["payload"].(map[string]any)["features"] = map[string]any{"chainOfTrust": true}
		id := q.create(t, def)
		s := q.waitRun(t, id, 0, 2*time.Minute)
		wantState(t, s, 0, tc.StateCompleted, "completed")
		doc, _ := q.rawArtifact(t, id, 0, chainoftrust.DocumentName)
		sig, _ := q.rawArtifact(t, id, 0, chainoftrust.SignatureName)
		keyData, err := os.ReadFile(filepath.Join(dataDir, "cot-signing-key.key"))
		if err != nil {
			t.Fatalf("round %d: dev's signing key: %v", round, err)
		}
		key, err := chainoftrust.ParsePrivateKey(keyData)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := chainoftrust.Verify(doc, sig, key.Public().(ed25519.PublicKey)); err != nil {
			t.Errorf("round %d: signature does not verify with dev's key: %v", round, err)
		}
		stop()
	}
}

// startDev runs `docker-worker dev` on a free loopback port with dataDir
// (and args) and returns a client of its queue and a function that stops it.
func startDev(t *testing.T, bin, dataDir string, args ...string) (*queueEnv, func()) {
	t.Helper()
	q, _, stop := startDevLogs(t, bin, dataDir, args...)
	return q, stop
}

// startDevLogs is startDev that also returns what dev writes to stderr
// (its JSON log).
func startDevLogs(t *testing.T, bin, dataDir string, args ...string) (*queueEnv, *logSink, func()) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, append([]string{"dev", "--listen", addr, "--data-dir", dataDir}, args...)...)
	logs := &logSink{}
	cmd.Stderr = logs
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	line := make(chan string, 1)
	var rest bytes.Buffer // stdout after the export line: must stay empty
	restDone := make(chan struct{})
	go func() {
		defer close(restDone)
		r := bufio.NewReader(out)
		s, _ := r.ReadString('\n')
		line <- s
		io.Copy(&rest, r)
	}()
	go func() { cmd.Wait(); close(exited) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(time.Minute):
			cmd.Process.Kill()
			<-exited
			t.Error("dev still running a minute after SIGINT")
		}
	}
	t.Cleanup(func() {
		stop()
		select {
		case <-restDone:
			// Scripts read dev's stdout for the export line (WORKER_METRICS
			// lines, for one, would break them).
			if r := strings.TrimSpace(rest.String()); r != "" {
				t.Errorf("dev wrote more than its export line to stdout: %.300q", r)
			}
		case <-time.After(10 * time.Second):
		}
		if t.Failed() {
			t.Logf("dev output:\n%s", logs.String())
		}
	})
	var exports string
	select {
	case exports = <-line:
	case <-exited:
		t.Fatalf("dev exited: %s", logs.String())
	case <-time.After(time.Minute):
		t.Fatal("dev printed no export line")
	}
	env := map[string]string{}
	for _, kv := range strings.Fields(strings.TrimPrefix(strings.TrimSpace(exports), "export ")) {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	q := &queueEnv{t: t, rootURL: env[config.EnvRootURL]}
	q.admin = tc.New(tc.Config{RootURL: q.rootURL, Credentials: &tc.Credentials{
		ClientID: env[config.EnvClientID], AccessToken: env[config.EnvAccessToken]}})
	return q, logs, stop
}
