package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/livelog"
	"go.dockerworker.dev/docker-worker/worker/localqueue"
	"go.dockerworker.dev/docker-worker/worker/slugid"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// taskEnv is an embedded queue the task command talks to through the
// standard environment variables.
type taskEnv struct {
	admin *tc.Client
}

func newTaskEnv(t *testing.T) *taskEnv {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	root := "http://" + ln.Addr().String()
	q, err := localqueue.New(localqueue.Config{
		RootURL:   root,
		DataDir:   t.TempDir(),
		Clients:   []localqueue.Client{{ClientID: "cli-admin", AccessToken: "cli-secret", Scopes: []string{"*"}}},
		ClaimWait: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- localqueue.Serve(ctx, ln, q) }()
	t.Cleanup(func() { cancel(); <-done; q.Close() })
	t.Setenv(config.EnvRootURL, root)
	t.Setenv(config.EnvClientID, "cli-admin")
	t.Setenv(config.EnvAccessToken, "cli-secret")
	t.Setenv(config.EnvCertificate, "")
	return &taskEnv{admin: tc.New(tc.Config{RootURL: root, Credentials: &tc.Credentials{ClientID: "cli-admin", AccessToken: "cli-secret"}})}
}

func (e *taskEnv) create(t *testing.T, group string, deps ...string) string {
	t.Helper()
	now := time.Now().UTC()
	def := map[string]any{
		"taskQueueId": "cli-prov/cli-type", "taskGroupId": group,
		"created": now.Format(time.RFC3339), "deadline": now.Add(time.Hour).Format(time.RFC3339),
		"dependencies": deps,
		"payload":      map[string]any{"log": "public/logs/custom.log"},
		"metadata":     map[string]any{"name": "cli task", "description": "d", "owner": "o@example.com", "source": "https://example.com"},
	}
	b, _ := json.Marshal(def)
	id := slugid.Nice()
	if _, err := e.admin.CreateTask(t.Context(), id, b); err != nil {
		t.Fatal(err)
	}
	return id
}

func runTaskCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := runTask(t.Context(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestTaskCommand(t *testing.T) {
	e := newTaskEnv(t)
	ctx := t.Context()
	group := slugid.Nice()
	first := e.create(t, group)
	second := e.create(t, group, first)

	// A worker's life: claim, log (gzip-less s3 + link), complete.
	claims, err := e.admin.ClaimWork(ctx, "cli-prov/cli-type", tc.ClaimWorkRequest{Tasks: 1, WorkerGroup: "wg", WorkerID: "w1"})
	if err != nil || len(claims.Tasks) != 1 {
		t.Fatalf("claimWork = %+v, %v", claims, err)
	}
	run := e.admin.WithCredentials(claims.Tasks[0].Credentials)
	exp := time.Now().Add(time.Hour)
	art, err := run.CreateArtifact(ctx, first, 0, "public/logs/backing.log", tc.S3Artifact(exp, "text/plain"))
	if err != nil {
		t.Fatal(err)
	}
	log := "hello from the task log\n"
	if err := run.PutArtifact(ctx, art.PutURL, func(context.Context) (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(log)), nil }, int64(len(log)), "text/plain", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := run.CreateArtifact(ctx, first, 0, "public/logs/custom.log", tc.LinkArtifact(exp, "public/logs/backing.log")); err != nil {
		t.Fatal(err)
	}
	if _, err := run.ReportCompleted(ctx, first, 0); err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		name     string
		args     []string
		wantCode int
		wantOut  []string
	}{
		{"status", []string{"status", first}, 0, []string{"task " + first + ": completed", "scheduled → completed", "wg/w1"}},
		{"status json", []string{"status", "--json", first}, 0, []string{`"state": "completed"`}},
		{"log follows the payload's log link", []string{"log", first}, 0, []string{log}},
		{"artifacts", []string{"artifacts", "--run", "0", first}, 0, []string{"public/logs/backing.log", "public/logs/custom.log", "link"}},
		{"dependent is pending", []string{"status", second}, 0, []string{": pending"}},
		{"cancel", []string{"cancel", second}, 0, []string{": exception", "scheduled → canceled"}},
		{"rerun", []string{"rerun", second}, 0, []string{": pending", "rerun"}},
		{"schedule an already scheduled task", []string{"schedule", second}, 0, []string{": pending"}},
		{"group", []string{"group", group}, 0, []string{first, second, "completed", "pending"}},
		{"unknown task", []string{"status", slugid.Nice()}, 1, nil},
		{"missing id", []string{"status"}, 2, nil},
		{"unknown command", []string{"frobnicate", first}, 2, nil},
		{"no command", nil, 2, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runTaskCLI(t, tt.args...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, out, errOut)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestTaskCommandNeedsRootURL(t *testing.T) {
	t.Setenv(config.EnvRootURL, "")
	code, _, errOut := runTaskCLI(t, "status", slugid.Nice())
	if code != 1 || !strings.Contains(errOut, config.EnvRootURL) {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

// watchedBuffer is an output that tells when it holds a given text.
type watchedBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // receives after every write (at most one pending)
}

func newWatchedBuffer() *watchedBuffer { return &watchedBuffer{changed: make(chan struct{}, 1)} }

func (b *watchedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.buf.Write(p)
	select {
	case b.changed <- struct{}{}:
	default:
	}
	return n, err
}

func (b *watchedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor waits until the buffer holds want, failing the test after a
// while or when done is closed first.
func (b *watchedBuffer) waitFor(t *testing.T, want string, done <-chan struct{}) {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for !strings.Contains(b.String(), want) {
		select {
		case <-b.changed:
		case <-done:
			if !strings.Contains(b.String(), want) {
				t.Fatalf("the command ended with output %q, want it to contain %q", b.String(), want)
			}
		case <-timeout.C:
			t.Fatalf("output %q still lacks %q while the log is live", b.String(), want)
		}
	}
}

// claimWithLog creates and claims a task and makes its log artifact a
// reference to url, as the live log feature does while the task runs; it
// returns the task and the run's client.
func (e *taskEnv) claimWithLog(t *testing.T, url string) (string, *tc.Client) {
	t.Helper()
	taskID := e.create(t, slugid.Nice())
	claims, err := e.admin.ClaimWork(t.Context(), "cli-prov/cli-type", tc.ClaimWorkRequest{Tasks: 1, WorkerGroup: "wg", WorkerID: "w1"})
	if err != nil || len(claims.Tasks) != 1 || claims.Tasks[0].Status.TaskID != taskID {
		t.Fatalf("claimWork = %+v, %v", claims, err)
	}
	run := e.admin.WithCredentials(claims.Tasks[0].Credentials)
	if _, err := run.CreateArtifact(t.Context(), taskID, 0, "public/logs/custom.log", tc.ReferenceArtifact(time.Now().Add(time.Hour), url, "text/plain; charset=utf-8")); err != nil {
		t.Fatal(err)
	}
	return taskID, run
}

// `task log` on a running task prints the live log as the task writes it,
// and exits when the log ends.
func TestTaskLogFollowsLiveLog(t *testing.T) {
	e := newTaskEnv(t)
	srv, err := livelog.Start(livelog.Config{Address: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	st, err := livelog.NewStream(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Remove() })
	taskID, _ := e.claimWithLog(t, srv.URL("127.0.0.1", srv.Add(st)))
	if _, err := st.Write([]byte("first line\n")); err != nil {
		t.Fatal(err)
	}

	out := newWatchedBuffer()
	var errOut bytes.Buffer
	done := make(chan struct{})
	code := -1
	go func() {
		defer close(done)
		code = runTask(t.Context(), []string{"log", taskID}, out, &errOut)
	}()
	out.waitFor(t, "first line\n", done)
	if _, err := st.Write([]byte("second line\n")); err != nil {
		t.Fatal(err)
	}
	out.waitFor(t, "second line\n", done)
	select {
	case <-done:
		t.Fatal("the command ended before the log did")
	default:
	}
	if err := st.Close(); err != nil { // the task ended
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the command did not end with the log")
	}
	if code != 0 || out.String() != "first line\nsecond line\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
}

// A run whose live stream is gone before it could be read (the worker is
// finishing) is looked at again: once the run is resolved, its uploaded
// log is printed.
func TestTaskLogAfterTheLiveStreamIsGone(t *testing.T) {
	e := newTaskEnv(t)
	// The worker's live log server no longer has the stream.
	asked := make(chan struct{}, 1)
	gone := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case asked <- struct{}{}:
		default:
		}
		http.Error(w, "no such log", http.StatusNotFound)
	}))
	t.Cleanup(gone.Close)
	taskID, run := e.claimWithLog(t, gone.URL+"/log/token")

	out := newWatchedBuffer()
	var errOut bytes.Buffer
	done := make(chan struct{})
	code := -1
	go func() {
		defer close(done)
		code = runTask(t.Context(), []string{"log", taskID}, out, &errOut)
	}()
	select {
	case <-asked:
	case <-time.After(10 * time.Second):
		t.Fatal("the command did not try the live log")
	}
	// The worker finishes: backing log, link, resolution.
	exp := time.Now().Add(time.Hour)
	art, err := run.CreateArtifact(t.Context(), taskID, 0, "public/logs/backing.log", tc.S3Artifact(exp, "text/plain"))
	if err != nil {
		t.Fatal(err)
	}
	const log = "the whole log\n"
	if err := run.PutArtifact(t.Context(), art.PutURL, func(context.Context) (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(log)), nil }, int64(len(log)), "text/plain", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := run.CreateArtifact(t.Context(), taskID, 0, "public/logs/custom.log", tc.LinkArtifact(exp, "public/logs/backing.log")); err != nil {
		t.Fatal(err)
	}
	if _, err := run.ReportCompleted(t.Context(), taskID, 0); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the command did not end after the run resolved")
	}
	if code != 0 || out.String() != log {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
}
