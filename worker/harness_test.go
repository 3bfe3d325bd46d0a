package worker_test

// The Docker-free tier of the runner tests: the real Worker against the
// real embedded queue, served over in-memory connections, with a scripted
// Docker (dockerfake). Everything runs inside a testing/synctest bubble,
// so maxRunTime, reclaims, status polls and claim backoff pass in fake
// time and a scenario takes milliseconds.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/features/backinglog"
	"go.dockerworker.dev/docker-worker/features/image"
	"go.dockerworker.dev/docker-worker/schemas"
	"go.dockerworker.dev/docker-worker/worker"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockerfake"
	"go.dockerworker.dev/docker-worker/worker/journal"
	"go.dockerworker.dev/docker-worker/worker/localqueue"
	"go.dockerworker.dev/docker-worker/worker/slugid"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

var _ worker.Docker = (*dockerfake.Fake)(nil)

const (
	adminID    = "admin"
	adminToken = "admin-secret"
	// rootURL only names the queue: every connection is dialled in memory.
	rootURL     = "http://queue.test"
	testImage   = "docker-worker-test/busybox:latest"
	logArtifact = "public/logs/live_backing.log"
	// taskDeadline is how long after its creation a task's deadline is.
	taskDeadline = 2 * time.Hour
)

// memListener is a net.Listener whose connections are in-memory pipes.
// Goroutines blocked on them are durably blocked, as synctest needs;
// goroutines blocked on real sockets are not.
type memListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newMemListener() *memListener {
	return &memListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *memListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *memListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *memListener) Addr() net.Addr { return memAddr{} }

// DialContext connects to the listener, whatever the address.
func (l *memListener) DialContext(ctx context.Context, _, _ string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type memAddr struct{}

func (memAddr) Network() string { return "mem" }
func (memAddr) String() string  { return "queue.test:80" }

// fault makes the queue answer the requests whose method is method and
// whose path ends with suffix with status, without handling them; status
// 0 closes the connection without an answer (a network error), and a
// negative status never answers (the request hangs until the client gives
// up on it).
type fault struct {
	method, suffix string
	status         int
}

func (f fault) matches(r *http.Request, p string) bool {
	return r.Method == f.method && strings.HasSuffix(p, f.suffix)
}

// request is one request the queue received.
type request struct {
	Method, Path string // Path without the /api/queue/v1 prefix
	At           time.Time
	Faulted      bool
	Status       int // the injected answer (0: none, or the connection closed)
}

// testerHeader marks the requests of the test's own admin client, which
// reach the queue even while it is down for the worker (setDown).
const testerHeader = "X-Runner-Test"

// markTester is a RoundTripper that sets testerHeader.
type markTester struct{ next http.RoundTripper }

func (m markTester) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(testerHeader, "1")
	return m.next.RoundTrip(r)
}

// faults is an http.Handler in front of the queue that injects faults and
// records every request. rules are set when the environment starts; set,
// setAfter and setDown change what is injected while a test runs.
type faults struct {
	next  http.Handler
	rules []fault

	mu   sync.Mutex
	seen []request
	// after are faults applied once the queue handled the request: its
	// answer is thrown away and the fault's is sent instead.
	after []fault
	// down drops every request, as a queue that cannot be reached.
	down bool
}

// set replaces the faults answered instead of the queue.
func (f *faults) set(rules ...fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = rules
}

// setAfter replaces the faults answered after the queue handled the
// request (the request is applied, its answer lost).
func (f *faults) setAfter(rules ...fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.after = rules
}

// setDown makes the queue unreachable (every connection is closed without
// an answer) or reachable again.
func (f *faults) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

func (f *faults) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := strings.TrimPrefix(r.URL.Path, "/api/queue/v1")
	f.mu.Lock()
	down, rules, after := f.down, f.rules, f.after
	f.mu.Unlock()
	if down && r.Header.Get(testerHeader) == "" {
		f.record(request{r.Method, p, time.Now(), true, 0})
		injectFault(w, r, 0)
		return
	}
	for _, rule := range rules {
		if rule.matches(r, p) {
			f.record(request{r.Method, p, time.Now(), true, rule.status})
			injectFault(w, r, rule.status)
			return
		}
	}
	for _, rule := range after {
		if rule.matches(r, p) {
			f.record(request{r.Method, p, time.Now(), true, rule.status})
			f.next.ServeHTTP(discard{header: http.Header{}}, r)
			injectFault(w, r, rule.status)
			return
		}
	}
	f.record(request{r.Method, p, time.Now(), false, 0})
	f.next.ServeHTTP(w, r)
}

// injectFault answers status with a Taskcluster error body, or, for status
// 0, closes the connection without an answer; for a negative status it
// waits until the client goes away.
func injectFault(w http.ResponseWriter, r *http.Request, status int) {
	if status < 0 {
		<-r.Context().Done()
		return
	}
	if status == 0 {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(fmt.Sprintf("hijack: %v", err))
		}
		conn.Close()
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{
		"code":    http.StatusText(status),
		"message": "injected by the test",
	})
}

// discard is a ResponseWriter that throws the answer away.
type discard struct{ header http.Header }

func (d discard) Header() http.Header         { return d.header }
func (d discard) Write(b []byte) (int, error) { return len(b), nil }
func (d discard) WriteHeader(int)             {}

func (f *faults) record(r request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = append(f.seen, r)
}

// requests returns the requests whose path contains sub.
func (f *faults) requests(sub string) []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []request
	for _, r := range f.seen {
		if strings.Contains(r.Path, sub) {
			out = append(out, r)
		}
	}
	return out
}

// logBuffer keeps the worker's JSON log for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// count returns how many records have msg.
func (l *logBuffer) count(msg string) int {
	n := 0
	for _, line := range strings.Split(l.String(), "\n") {
		var rec struct {
			Msg string `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == msg {
			n++
		}
	}
	return n
}

// setup is what a test changes in the environment.
type setup struct {
	// config adjusts the worker's configuration.
	config func(*config.Config)
	// script gives each container its behaviour (nil: exit 0 at once).
	script func(docker.ContainerSpec) dockerfake.Script
	// pullErr fails image pulls (see dockerfake.Fake.PullErr).
	pullErr func(ref string) error
	// image adjusts the image feature's configuration.
	image func(*image.Config)
	// faults are injected in front of the queue.
	faults []fault
	// hooks, when set, is the first feature; the backing log comes after
	// it.
	hooks *hooks
	// first features come before the built-in ones, extra features after
	// them; extensions are worker services beside them.
	first      []features.Feature
	extra      []features.Feature
	extensions []features.Extension
	// anonymousScopes, when set, are the queue's anonymous scopes; and
	// workerScopes, when set, are the scopes of the worker's own client
	// (default: the admin client, scope *).
	anonymousScopes *[]string
	workerScopes    []string
	// stateDir, when set, is the worker's journal directory; beforeRun is
	// called with the queue up and before the worker starts (to leave
	// what a killed worker process would).
	stateDir  string
	beforeRun func(t *testing.T, admin *tc.Client, fake *dockerfake.Fake, cfg *config.Config)
	// docker, when set, wraps the fake Docker the worker uses.
	docker func(*dockerfake.Fake) worker.Docker
}

// env is a running worker, embedded queue and fake Docker in one synctest
// bubble. Create it with start inside synctest.Test.
type env struct {
	t      *testing.T
	admin  *tc.Client
	faults *faults
	docker *dockerfake.Fake
	cfg    *config.Config
	w      *worker.Worker
	logs   *logBuffer
	done   chan error
	// outage is for a test that takes the queue down once only.
	outage sync.Once
}

// start serves the embedded queue (its store in t.TempDir()) over
// in-memory connections and runs a worker against it with a fake Docker.
// Everything stops when the test ends.
func start(t *testing.T, s setup) *env {
	t.Helper()
	ln := newMemListener()
	transport := &http.Transport{DialContext: ln.DialContext}
	httpClient := &http.Client{Transport: transport}

	dir := t.TempDir()
	store, err := localqueue.OpenBoltStore(filepath.Join(dir, "queue.db"))
	if err != nil {
		t.Fatal(err)
	}
	qcfg := localqueue.Config{
		RootURL: rootURL,
		DataDir: dir,
		Store:   store,
		Clients: []localqueue.Client{{ClientID: adminID, AccessToken: adminToken, Scopes: []string{"*"}}},
	}
	workerID, workerToken := adminID, adminToken
	if s.workerScopes != nil {
		workerID, workerToken = "worker-client", "worker-secret"
		qcfg.Clients = append(qcfg.Clients, localqueue.Client{ClientID: workerID, AccessToken: workerToken, Scopes: s.workerScopes})
	}
	if s.anonymousScopes != nil {
		qcfg.AnonymousScopes = *s.anonymousScopes
	}
	q, err := localqueue.New(qcfg)
	if err != nil {
		t.Fatal(err)
	}
	f := &faults{next: q.Handler(), rules: s.faults}
	srv := &http.Server{Handler: f}
	qctx, stopQueue := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { q.Run(qctx) })
	wg.Go(func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	t.Cleanup(func() {
		stopQueue()
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Errorf("queue shutdown: %v", err)
		}
		wg.Wait()
		transport.CloseIdleConnections()
		if err := q.Close(); err != nil {
			t.Errorf("close queue: %v", err)
		}
	})

	cfg := config.Default()
	cfg.RootURL = rootURL
	cfg.Taskcluster = config.Credentials{ClientID: workerID, AccessToken: workerToken}
	cfg.ProvisionerID, cfg.WorkerType = "null-provisioner", "fake-docker"
	cfg.WorkerGroup, cfg.WorkerID = "fake-group", "fake-worker"
	cfg.WorkerNodeType = "test-worker"
	cfg.PublicIP = "127.0.0.1"
	cfg.TaskQueue.PollInterval = 1000
	cfg.TaskQueue.MaxBackoff = 10000
	if s.config != nil {
		s.config(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	v, err := schemas.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	client := tc.New(tc.Config{RootURL: rootURL, HTTPClient: httpClient,
		Credentials: &tc.Credentials{ClientID: adminID, AccessToken: adminToken}})
	workerClient := tc.New(tc.Config{RootURL: rootURL, HTTPClient: httpClient,
		Credentials: &tc.Credentials{ClientID: workerID, AccessToken: workerToken}})
	fake := &dockerfake.Fake{Script: s.script, PullErr: s.pullErr}
	var feats []features.Feature
	if s.hooks != nil {
		feats = append(feats, s.hooks)
	}
	feats = append(feats, s.first...)
	icfg := image.Config{
		Docker: fake,
		Queue:  imageQueue{tc.New(tc.Config{RootURL: rootURL, HTTPClient: httpClient})},
		Policy: docker.PullPolicy{Attempts: cfg.DockerConfig.MaxAttempts},
	}
	if s.image != nil {
		s.image(&icfg)
	}
	feats = append(feats, backinglog.New(t.TempDir()), image.New(icfg))
	feats = append(feats, s.extra...)
	logs := &logBuffer{}
	if s.beforeRun != nil {
		s.beforeRun(t, client, fake, cfg)
	}
	var jnl *journal.Journal
	if s.stateDir != "" {
		if jnl, err = journal.Open(s.stateDir); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { jnl.Close() })
	}
	var d worker.Docker = fake
	if s.docker != nil {
		d = s.docker(fake)
	}
	w := worker.New(worker.Options{
		Journal:     jnl,
		Config:      cfg,
		Queue:       workerClient,
		StatusQueue: tc.New(tc.Config{RootURL: rootURL, HTTPClient: httpClient}),
		RunQueue:    func(c tc.Credentials) worker.RunQueue { return client.WithCredentials(c) },
		Docker:      d,
		Validator:   v,
		Features:    feats,
		Extensions:  s.extensions,
		Logger:      slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Version:     "test",
		Hostname:    "test-host",
	})
	admin := tc.New(tc.Config{RootURL: rootURL, HTTPClient: &http.Client{Transport: markTester{transport}},
		Credentials: &tc.Credentials{ClientID: adminID, AccessToken: adminToken}})
	e := &env{t: t, admin: admin, faults: f, docker: fake, cfg: cfg, w: w, logs: logs, done: make(chan error, 1)}
	if s.hooks != nil {
		s.hooks.e = e
	}
	go func() { e.done <- w.Run(context.Background()) }()
	t.Cleanup(func() {
		e.shutdown()
		if got := fake.Leaked(); len(got) != 0 {
			t.Errorf("containers never removed: %v", got)
		}
		fake.Close()
		if t.Failed() {
			t.Logf("worker log:\n%s", logs.String())
		}
	})
	return e
}

// shutdown stops the worker gracefully and waits for Run to return.
func (e *env) shutdown() {
	e.t.Helper()
	e.w.Stop(worker.StopGraceful)
	if err := <-e.done; err != nil {
		e.t.Errorf("Run: %v", err)
	}
	e.done <- nil // later calls return at once
}

// abort stops the worker immediately.
func (e *env) abort() { e.w.Stop(worker.StopImmediate) }

// waitStopped waits until Run returns by itself (after an abort).
func (e *env) waitStopped() {
	e.t.Helper()
	select {
	case err := <-e.done:
		if err != nil {
			e.t.Errorf("Run: %v", err)
		}
		e.done <- nil
	case <-time.After(24 * time.Hour):
		e.t.Fatal("Run did not return after the abort")
	}
}

// payload is a task payload running cmd in the test image.
func payload(maxRunTime int, cmd ...string) map[string]any {
	return map[string]any{"image": testImage, "command": cmd, "maxRunTime": maxRunTime}
}

// createTask creates a task with payload for the worker and returns its ID.
func (e *env) createTask(payload map[string]any) string {
	e.t.Helper()
	return e.createTaskFor(e.cfg.WorkerType, payload, nil)
}

// createTaskFor creates a task with payload, scopes and routes for
// workerType and returns its ID.
func (e *env) createTaskFor(workerType string, payload map[string]any, scopes []string, routes ...string) string {
	e.t.Helper()
	now := time.Now().UTC()
	ts := func(t time.Time) string { return t.Format("2006-01-02T15:04:05.000Z") }
	if scopes == nil {
		scopes = []string{}
	}
	def, err := json.Marshal(map[string]any{
		"provisionerId": e.cfg.ProvisionerID,
		"workerType":    workerType,
		"scopes":        scopes,
		"routes":        append([]string{}, routes...),
		"schedulerId":   "tests",
		"retries":       1,
		"created":       ts(now),
		"deadline":      ts(now.Add(taskDeadline)),
		"expires":       ts(now.Add(24 * time.Hour)),
		"payload":       payload,
		"metadata": map[string]any{
			"name": "runner test", "description": "a task for the fake Docker", "owner": "tests@localhost",
			"source": "https://localhost/docker-worker/tests",
		},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	id := slugid.Nice()
	if _, err := e.admin.CreateTask(e.t.Context(), id, def); err != nil {
		e.t.Fatalf("create task: %v", err)
	}
	return id
}

// status is the task's status in the queue.
func (e *env) status(taskID string) tc.TaskStatus {
	e.t.Helper()
	resp, err := e.admin.Status(e.t.Context(), taskID)
	if err != nil {
		e.t.Fatalf("status of %s: %v", taskID, err)
	}
	return resp.Status
}

// waitFor polls cond in fake time until it holds, every 100ms at first
// and then less often, up to every poll; a scenario that needs more than a
// fake day is stuck.
func (e *env) waitFor(what string, poll time.Duration, cond func() bool) {
	e.t.Helper()
	every := min(100*time.Millisecond, poll)
	for deadline := time.Now().Add(24 * time.Hour); !cond(); {
		if time.Now().After(deadline) {
			e.t.Fatalf("still waiting for %s after a (fake) day", what)
		}
		time.Sleep(every)
		every = min(2*every, poll)
	}
}

// waitRun waits until run runID of the task is resolved and returns the
// task's status.
func (e *env) waitRun(taskID string, runID int) tc.TaskStatus {
	e.t.Helper()
	var st tc.TaskStatus
	// Each poll is a queue request: back off to every minute.
	e.waitFor(fmt.Sprintf("run %s/%d to be resolved", taskID, runID), time.Minute, func() bool {
		st = e.status(taskID)
		if runID >= len(st.Runs) {
			return false
		}
		switch st.Runs[runID].State {
		case tc.StateCompleted, tc.StateFailed, tc.StateException:
			return true
		}
		return false
	})
	return st
}

// waitIdle waits until n containers were created and no task runs.
func (e *env) waitIdle(n int) {
	e.t.Helper()
	e.waitFor("the worker to be idle", 100*time.Millisecond, func() bool {
		return len(e.docker.Containers()) >= n && e.w.Running() == 0
	})
}

// waitRunning waits until a container runs and returns its ID.
func (e *env) waitRunning() string {
	e.t.Helper()
	var id string
	e.waitFor("a running container", 100*time.Millisecond, func() bool {
		r := e.docker.Running()
		if len(r) > 0 {
			id = r[0]
		}
		return id != ""
	})
	return id
}

// taskLog returns the task log uploaded for the run, and whether there is
// one.
func (e *env) taskLog(taskID string, runID int) (string, bool) {
	e.t.Helper()
	var buf bytes.Buffer
	_, err := e.admin.Download(e.t.Context(), e.admin.ArtifactURL(taskID, runID, logArtifact), &buf)
	if tc.StatusCode(err) == http.StatusNotFound {
		return "", false
	}
	if err != nil {
		e.t.Fatalf("download task log: %v", err)
	}
	return buf.String(), true
}

// hooks is an always-on feature that calls the test at the Exited and
// Finish phases of every task, with the environment.
type hooks struct {
	e      *env
	exited func(ctx context.Context, e *env) error
	finish func(ctx context.Context, e *env) error
}

var (
	_ features.Exiter   = (*hooks)(nil)
	_ features.Finisher = (*hooks)(nil)
)

func (h *hooks) Name() string                                        { return "testHooks" }
func (h *hooks) AlwaysOn() bool                                      { return true }
func (h *hooks) NewTask(features.Task) (features.TaskFeature, error) { return h, nil }

func (h *hooks) Exited(ctx context.Context, _ *features.ExitedRequest) error {
	if h.exited == nil {
		return nil
	}
	return h.exited(ctx, h.e)
}

func (h *hooks) Finish(ctx context.Context, _ *features.FinishRequest) error {
	if h.finish == nil {
		return nil
	}
	return h.finish(ctx, h.e)
}
