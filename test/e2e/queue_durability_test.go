package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/slugid"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// queueProcess is a `docker-worker queue` process started by a test.
type queueProcess struct {
	cmd     *exec.Cmd
	rootURL string
	exited  chan struct{}
}

// startQueueProcess runs `bin queue --config cfg` and waits until it
// answers. The process is killed (by its PID) at the end of the test.
func startQueueProcess(t *testing.T, bin, cfg string) *queueProcess {
	t.Helper()
	cmd := exec.Command(bin, "queue", "--config", cfg, "--log-level", "warn", "--claim-wait", "200ms")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &queueProcess{cmd: cmd, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(p.exited) }()
	t.Cleanup(p.kill)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		p.kill()
		t.Fatalf("queue printed no export line: %v\nstderr: %s", err, stderr.String())
	}
	go io.Copy(io.Discard, stdout)
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, "TASKCLUSTER_ROOT_URL="); ok {
			p.rootURL = v
		}
	}
	if p.rootURL == "" {
		t.Fatalf("no root URL in %q", line)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(p.rootURL + "/api/queue/v1/ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue at %s does not answer: %v", p.rootURL, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill sends SIGKILL: no chance to flush or close anything.
func (p *queueProcess) kill() {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
	}
	<-p.exited
}

// acked records what the queue acknowledged (answered 2xx) before it died.
type acked struct {
	mu        sync.Mutex
	tasks     map[string]json.RawMessage // taskId → definition sent
	running   map[string]tc.TaskClaim    // taskId → claim of run 0 (not resolved by an acked call)
	completed map[string]bool            // taskId → run 0 reported completed
	artifacts map[string]string          // taskId → bytes of public/data.txt (uploaded and acked)
}

func newAcked() *acked {
	return &acked{tasks: map[string]json.RawMessage{}, running: map[string]tc.TaskClaim{}, completed: map[string]bool{}, artifacts: map[string]string{}}
}

// burst drives createTask, claimWork, createArtifact + upload and
// reportCompleted from several goroutines until ctx is done.
func burst(ctx context.Context, root string, creds *tc.Credentials, queueID string, a *acked) {
	client := tc.New(tc.Config{RootURL: root, Credentials: creds, Retries: -1, HTTPClient: &http.Client{Timeout: 5 * time.Second}})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				now := time.Now().UTC()
				def, _ := json.Marshal(map[string]any{
					"taskQueueId": queueID,
					"created":     now.Format(time.RFC3339Nano), "deadline": now.Add(time.Hour).Format(time.RFC3339Nano),
					"payload":  map[string]any{"n": i, "w": w},
					"metadata": map[string]any{"name": fmt.Sprintf("burst %d/%d", w, i), "description": "durability", "owner": "t@example.com", "source": "https://example.com"},
				})
				id := slugid.Nice()
				if _, err := client.CreateTask(ctx, id, def); err != nil {
					continue
				}
				a.mu.Lock()
				a.tasks[id] = def
				a.mu.Unlock()
				claims, err := client.ClaimWork(ctx, queueID, tc.ClaimWorkRequest{Tasks: 1, WorkerGroup: "durable", WorkerID: fmt.Sprintf("w%d", w)})
				if err != nil || len(claims.Tasks) == 0 {
					continue
				}
				c := claims.Tasks[0]
				a.mu.Lock()
				a.running[c.Status.TaskID] = c
				a.mu.Unlock()
				run := client.WithCredentials(c.Credentials)
				if i%2 == 0 {
					continue // leave it running
				}
				body := "bytes of " + c.Status.TaskID
				art, err := run.CreateArtifact(ctx, c.Status.TaskID, c.RunID, "public/data.txt", tc.S3Artifact(now.Add(24*time.Hour), "text/plain"))
				if err != nil {
					continue
				}
				if err := run.PutArtifact(ctx, art.PutURL, func(context.Context) (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }, int64(len(body)), "text/plain", ""); err != nil {
					continue
				}
				a.mu.Lock()
				a.artifacts[c.Status.TaskID] = body
				a.mu.Unlock()
				if _, err := run.ReportCompleted(ctx, c.Status.TaskID, c.RunID); err != nil {
					continue
				}
				a.mu.Lock()
				a.completed[c.Status.TaskID] = true
				delete(a.running, c.Status.TaskID)
				a.mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// Killing the queue process (SIGKILL) in the middle of a burst of calls
// loses nothing it acknowledged: after a restart in the same data
// directory every created task, claim, uploaded artifact and resolution is
// there, the temporary credentials issued before the crash still work, and
// the queue goes on working.
func TestQueueSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the binary")
	}
	bin := workerBinary(t)
	dataDir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := filepath.Join(t.TempDir(), "queue.yml")
	admin := &tc.Credentials{ClientID: "durable-admin", AccessToken: "durable-secret"}
	err = os.WriteFile(cfg, []byte(fmt.Sprintf(`listen: %s
dataDir: %s
clients:
  - clientId: %s
    accessToken: %s
    scopes: ["*"]
`, addr, dataDir, admin.ClientID, admin.AccessToken)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	queueID := "durable-prov/durable"
	a := newAcked()
	for round := range 3 {
		p := startQueueProcess(t, bin, cfg)
		ctx, stop := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { burst(ctx, p.rootURL, admin, queueID, a); close(done) }()
		time.Sleep(time.Duration(400+200*round) * time.Millisecond)
		p.kill() // mid-burst
		stop()
		<-done
	}
	t.Logf("acknowledged before the kills: %d tasks, %d running claims, %d artifacts, %d completed",
		len(a.tasks), len(a.running), len(a.artifacts), len(a.completed))
	if len(a.tasks) < 10 || len(a.completed) == 0 || len(a.running) == 0 {
		t.Fatalf("the burst did too little to test anything: %d tasks, %d completed, %d running", len(a.tasks), len(a.completed), len(a.running))
	}

	p := startQueueProcess(t, bin, cfg)
	ctx := t.Context()
	client := tc.New(tc.Config{RootURL: p.rootURL, Credentials: admin})
	for id, sent := range a.tasks {
		def, err := client.Task(ctx, id)
		if err != nil {
			t.Fatalf("acknowledged task %s is gone: %v", id, err)
		}
		var in, out map[string]any
		json.Unmarshal(sent, &in)
		json.Unmarshal(def.Raw, &out)
		if in["metadata"].(map[string]any)["name"] != out["metadata"].(map[string]any)["name"] {
			t.Errorf("task %s: definition %s differs from what was created (%s)", id, def.Raw, sent)
		}
		st, err := client.Status(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case a.completed[id]:
			if st.Status.State != tc.StateCompleted {
				t.Errorf("task %s was reported completed, now %s", id, st.Status.State)
			}
		case a.running[id].RunID == 0 && a.running[id].Status.TaskID == id:
			// Claimed and acknowledged: still running (the claim lasts 20 minutes),
			// or completed if the report reached the store but the answer was lost.
			if s := st.Status.State; s != tc.StateRunning && s != tc.StateCompleted {
				t.Errorf("claimed task %s is %s", id, s)
			}
		}
	}
	for id, body := range a.artifacts {
		var got bytes.Buffer
		if _, err := client.Download(ctx, client.ArtifactURL(id, 0, "public/data.txt"), &got); err != nil {
			t.Errorf("artifact of %s: %v", id, err)
		} else if got.String() != body {
			t.Errorf("artifact of %s = %q, want %q", id, got.String(), body)
		}
	}
	// Credentials issued before the crashes still work (the issuer secret is
	// kept in the store), and the queue goes on: reclaim, then complete.
	n := 0
	for id, c := range a.running {
		if a.completed[id] {
			continue
		}
		run := client.WithCredentials(c.Credentials)
		if _, err := run.ReclaimTask(ctx, id, c.RunID); err != nil {
			t.Errorf("reclaim %s with credentials from before the crash: %v", id, err)
			continue
		}
		if _, err := run.ReportCompleted(ctx, id, c.RunID); err != nil {
			t.Errorf("complete %s: %v", id, err)
		}
		if n++; n == 5 {
			break
		}
	}
	now := time.Now().UTC()
	def, _ := json.Marshal(map[string]any{
		"taskQueueId": "durable-prov/after", "created": now.Format(time.RFC3339), "deadline": now.Add(time.Hour).Format(time.RFC3339),
		"payload": map[string]any{}, "metadata": map[string]any{"name": "after", "description": "d", "owner": "t@example.com", "source": "https://example.com"},
	})
	after := slugid.Nice()
	if _, err := client.CreateTask(ctx, after, def); err != nil {
		t.Fatal(err)
	}
	claims, err := client.ClaimWork(ctx, "durable-prov/after", tc.ClaimWorkRequest{Tasks: 1, WorkerGroup: "durable", WorkerID: "after"})
	if err != nil || len(claims.Tasks) != 1 || claims.Tasks[0].Status.TaskID != after {
		t.Fatalf("claim after restart = %+v, %v", claims, err)
	}
}
