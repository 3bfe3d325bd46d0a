package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/worker"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
	"go.dockerworker.dev/docker-worker/worker/localqueue"
	"go.dockerworker.dev/docker-worker/worker/slugid"
	"go.dockerworker.dev/docker-worker/worker/tc"
	"go.dockerworker.dev/docker-worker/worker/wiring"
)

const (
	adminID    = "e2e-admin"
	adminToken = "e2e-admin-secret"
	image      = dockertest.Image
)

// queueEnv is an embedded queue served over real HTTP on loopback.
type queueEnv struct {
	rootURL string
	admin   *tc.Client
	// t is the test that started the queue; worker configs get their
	// state directories from it.
	t *testing.T
	// queue is the queue itself (nil when a test reaches one it did not
	// start), for state the API does not show.
	queue *localqueue.Queue
}

func startQueue(t *testing.T, mutate func(*localqueue.Config)) *queueEnv {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rootURL := "http://" + ln.Addr().String()
	cfg := localqueue.Config{
		RootURL:        rootURL,
		DataDir:        t.TempDir(),
		Clients:        []localqueue.Client{{ClientID: adminID, AccessToken: adminToken, Scopes: []string{"*"}}},
		ClaimWait:      time.Second,
		ExpiryInterval: 200 * time.Millisecond,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	q, err := localqueue.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- localqueue.Serve(ctx, ln, q) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return &queueEnv{
		t:       t,
		queue:   q,
		rootURL: rootURL,
		admin:   tc.New(tc.Config{RootURL: rootURL, Credentials: &tc.Credentials{ClientID: adminID, AccessToken: adminToken}}),
	}
}

// workerConfig is a worker config for q with a fresh workerType, so that
// tests never claim each other's tasks.
func (q *queueEnv) workerConfig(workerType string) *config.Config {
	c := config.Default()
	c.RootURL = q.rootURL
	c.Taskcluster = config.Credentials{ClientID: adminID, AccessToken: adminToken}
	c.ProvisionerID = "null-provisioner"
	c.WorkerType = workerType
	c.WorkerGroup = "random-local-worker"
	c.WorkerID = "w-" + strings.ToLower(slugid.Nice()[:8])
	c.WorkerNodeType = "test-worker"
	c.PublicIP = "127.0.0.1"
	c.TaskQueue.PollInterval = 100
	c.TaskQueue.MaxBackoff = 1000
	c.DockerConfig.MaxAttempts = 2
	c.DockerConfig.DelayFactor = 50
	c.CapacityManagement.DiskspaceThreshold = 1_000_000_000
	c.StateDir = q.t.TempDir()
	return c
}

// logSink keeps the worker's JSON log lines for assertions.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String is everything written so far.
func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// records returns the log records with msg, decoded.
func (l *logSink) records(msg string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(l.buf.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// count returns how many log records have msg.
func (l *logSink) count(msg string) int { return len(l.records(msg)) }

type workerEnv struct {
	w    *worker.Worker
	cfg  *config.Config
	logs *logSink
	stop context.CancelFunc
	done chan error
}

// startWorker runs an in-process worker against q with the real Docker
// daemon, built as the binary builds it (worker/wiring), with the live log
// feature off so that the run's artifacts are the task log alone.
func startWorker(t *testing.T, q *queueEnv, cfg *config.Config) *workerEnv {
	t.Helper()
	return startWorkerWith(t, q, cfg, nil)
}

// startWorkerWith is startWorker with extra features after the built-in
// ones.
func startWorkerWith(t *testing.T, q *queueEnv, cfg *config.Config, extra []features.Feature) *workerEnv {
	t.Helper()
	off := false
	if cfg.Features == nil {
		cfg.Features = map[string]config.FeatureConfig{}
	}
	cfg.Features["localLiveLog"] = config.FeatureConfig{Enabled: &off}
	return buildWorker(t, cfg, extra)
}

// startFullWorker runs an in-process worker with every feature the binary
// has, its live log server on loopback.
func startFullWorker(t *testing.T, q *queueEnv, cfg *config.Config) *workerEnv {
	t.Helper()
	return buildWorker(t, cfg, nil)
}

func buildWorker(t *testing.T, cfg *config.Config, extra []features.Feature) *workerEnv {
	t.Helper()
	dc := dockertest.Require(t)
	cfg.Logging.LiveLogBindAddress = "127.0.0.1"
	if cfg.Ed25519SigningKeyLocation == config.DefaultEd25519SigningKeyLocation {
		cfg.Ed25519SigningKeyLocation = testSigningKey(t)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &logSink{}
	w, err := wiring.Build(t.Context(), cfg, wiring.Options{
		Logger:   slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Version:  "e2e",
		Hostname: "e2e-host",
		TempDir:  t.TempDir(),
		Docker:   dc,
		Stdout:   io.Discard, // WORKER_METRICS lines; TestMetrics* read their own

		ExtraFeatures: extra,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	we := &workerEnv{w: w.Worker, cfg: cfg, logs: logs, stop: cancel, done: make(chan error, 1)}
	go func() {
		err := w.Run(ctx)
		// A stopped worker releases its state directory at once, as its
		// process would by exiting (tests start another on it).
		w.Close()
		we.done <- err
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-we.done:
		case <-time.After(2 * time.Minute):
			t.Error("worker did not stop")
		}
		w.Close()
		if t.Failed() {
			t.Logf("worker log:\n%s", logs.String())
		}
	})
	return we
}

// task is a task definition under construction.
type task map[string]any

func newTask(cfg *config.Config, payload map[string]any) task {
	now := time.Now().UTC()
	ts := func(t time.Time) string { return t.Format("2006-01-02T15:04:05.000Z") }
	return task{
		"provisionerId": cfg.ProvisionerID,
		"workerType":    cfg.WorkerType,
		"schedulerId":   "docker-worker-tests",
		"retries":       1,
		"created":       ts(now),
		"deadline":      ts(now.Add(time.Hour)),
		"expires":       ts(now.Add(24 * time.Hour)),
		"payload":       payload,
		"metadata": map[string]any{
			"name": "e2e", "description": "docker-worker e2e test", "owner": "e2e@localhost",
			"source": "https://localhost/docker-worker/e2e",
		},
	}
}

// shell is a payload running script with sh in the test image.
func shell(script string, maxRunTime int) map[string]any {
	return map[string]any{
		"image":      image,
		"command":    []string{"/bin/sh", "-c", script},
		"maxRunTime": maxRunTime,
	}
}

func (q *queueEnv) create(t *testing.T, def task) string {
	t.Helper()
	id := slugid.Nice()
	body, err := json.Marshal(def)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.admin.CreateTask(t.Context(), id, body); err != nil {
		t.Fatalf("createTask: %v", err)
	}
	return id
}

// waitRun waits until run runID of taskID is resolved and returns the status.
func (q *queueEnv) waitRun(t *testing.T, taskID string, runID int, within time.Duration) tc.TaskStatus {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		resp, err := q.admin.Status(t.Context(), taskID)
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		s := resp.Status
		if len(s.Runs) > runID {
			switch s.Runs[runID].State {
			case tc.StateCompleted, tc.StateFailed, tc.StateException:
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %d of %s not resolved after %v: %+v", runID, taskID, within, s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// logOf downloads the run's live log (the link to the backing log).
func (q *queueEnv) logOf(t *testing.T, taskID string, runID int, name string) string {
	t.Helper()
	if name == "" {
		name = "public/logs/live.log"
	}
	var buf bytes.Buffer
	if _, err := q.admin.Download(t.Context(), q.admin.ArtifactURL(taskID, runID, name), &buf); err != nil {
		t.Fatalf("download %s: %v", name, err)
	}
	return buf.String()
}

func (q *queueEnv) artifacts(t *testing.T, taskID string, runID int) map[string]tc.Artifact {
	t.Helper()
	resp, err := q.admin.ListArtifacts(t.Context(), taskID, runID, "")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]tc.Artifact{}
	for _, a := range resp.Artifacts {
		out[a.Name] = a
	}
	return out
}

func wantState(t *testing.T, s tc.TaskStatus, runID int, state, reason string) {
	t.Helper()
	r := s.Runs[runID]
	if r.State != state || (reason != "" && r.ReasonResolved != reason) {
		t.Fatalf("run %d: state %s/%s, want %s/%s", runID, r.State, r.ReasonResolved, state, reason)
	}
}

func mustContain(t *testing.T, text string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(text, w) {
			t.Errorf("log lacks %q; log:\n%s", w, text)
		}
	}
}

// workerBinary builds cmd/docker-worker into a temporary directory.
func workerBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "docker-worker")
	cmd := exec.Command("go", "build", "-o", bin, "go.dockerworker.dev/docker-worker/cmd/docker-worker")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// dockertestRequire fails (CI) or skips when no Docker daemon answers.
func dockertestRequire(t *testing.T) { t.Helper(); dockertest.Require(t) }

// wantOnlyLogs checks that a run the queue resolved (cancelled, deadline)
// got its task log and no other artifact, once the worker is done with
// it, and that the log holds line.
func (q *queueEnv) wantOnlyLogs(t *testing.T, we *workerEnv, taskID string, line string) {
	t.Helper()
	for start := time.Now(); we.logs.count("task resolved") == 0; time.Sleep(50 * time.Millisecond) {
		if time.Since(start) > time.Minute {
			t.Fatal("the worker did not finish the run")
		}
	}
	arts := q.artifacts(t, taskID, 0)
	names := slices.Sorted(maps.Keys(arts))
	if want := []string{"public/logs/live.log", "public/logs/live_backing.log"}; !slices.Equal(names, want) {
		t.Errorf("artifacts of the resolved run: %v, want %v", names, want)
		return
	}
	mustContain(t, q.logOf(t, taskID, 0, "public/logs/live_backing.log"), line)
}
