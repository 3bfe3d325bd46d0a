package e2e

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/localqueue"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// faultProxy is a reverse proxy between the worker and the embedded queue
// that can be taken down (its port refuses connections, open connections
// are cut) and can answer 503 instead of the queue.
type faultProxy struct {
	t      *testing.T
	URL    string
	addr   string
	target *url.URL

	mu      sync.Mutex
	srv     *http.Server
	n       int  // requests seen
	every   int  // answer 503 to every n-th request (0: never)
	reclaim bool // answer 503 to reclaims
	// reclaimFaults counts the reclaims answered 503.
	reclaimFaults int
}

// queueBehindProxy serves an embedded queue whose root URL is a fault
// proxy's, so that every request of the worker, artifact bytes included,
// goes through the proxy. The queueEnv's admin client talks to the queue
// directly.
func queueBehindProxy(t *testing.T, mutate func(*localqueue.Config)) (*queueEnv, *faultProxy) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{t: t, addr: ln.Addr().String(), URL: "http://" + ln.Addr().String()}
	q := startQueue(t, func(c *localqueue.Config) {
		c.RootURL = p.URL
		if mutate != nil {
			mutate(c)
		}
	})
	if p.target, err = url.Parse(q.rootURL); err != nil {
		t.Fatal(err)
	}
	p.serve(ln)
	t.Cleanup(p.down)
	return q, p
}

func (p *faultProxy) serve(ln net.Listener) {
	rp := httputil.NewSingleHostReverseProxy(p.target) // keeps the Host header, which Hawk signs
	// A request the worker gave up on (a claimWork long poll at shutdown)
	// is no test failure: answer 502 without logging.
	rp.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, _ error) { w.WriteHeader(http.StatusBadGateway) }
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.n++
		fail := p.every > 0 && p.n%p.every == 0
		if p.reclaim && r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/reclaim") {
			fail = true
			p.reclaimFaults++
		}
		p.mu.Unlock()
		if fail {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			json.NewEncoder(w).Encode(map[string]string{"code": "ServiceUnavailable", "message": "injected by the fault proxy"})
			return
		}
		rp.ServeHTTP(w, r)
	})}
	p.mu.Lock()
	p.srv = srv
	p.mu.Unlock()
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			p.t.Errorf("fault proxy: %v", err)
		}
	}()
}

// down closes the proxy's port and cuts its open connections: the queue
// cannot be reached.
func (p *faultProxy) down() {
	p.mu.Lock()
	srv := p.srv
	p.srv = nil
	p.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// up opens the proxy's port again.
func (p *faultProxy) up() {
	p.t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("fault proxy: listen again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

// failEvery makes the proxy answer 503 to every n-th request (0: none).
func (p *faultProxy) failEvery(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.every = n
}

// failReclaims makes the proxy answer 503 to every reclaim (or not).
func (p *faultProxy) failReclaims(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reclaim = on
}

func (p *faultProxy) reclaimsFailed() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reclaimFaults
}

// waitRunning waits until run 0 of every task is running.
func (q *queueEnv) waitRunning(t *testing.T, ids []string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for _, id := range ids {
		for {
			resp, err := q.admin.Status(t.Context(), id)
			if err != nil {
				t.Fatalf("status: %v", err)
			}
			if runs := resp.Status.Runs; len(runs) > 0 && runs[0].State == tc.StateRunning {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("task %s not running after %v: %+v", id, within, resp.Status)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// noReportErrors checks the worker's log: every report ended as a
// resolution, none failed or was given up.
func noReportErrors(t *testing.T, we *workerEnv) {
	t.Helper()
	if n := we.logs.count("could not resolve task"); n != 0 {
		t.Errorf("%d 'could not resolve task' records", n)
	}
	for _, rec := range we.logs.records("task resolved") {
		if b, _ := json.Marshal(rec); strings.Contains(string(b), "giving up") {
			t.Errorf("a report the queue applied logged as given up: %s", b)
		}
	}
}

// The queue unreachable for 10 seconds while tasks run and finish: every
// task whose container exited 0 resolves completed, with its log, once the
// queue is back. (The worker used to give up after the client's 6
// attempts, within about 3 seconds, and resolve such tasks failed.)
func TestQueueDownWhileTasksFinish(t *testing.T) {
	dockertestRequire(t)
	q, p := queueBehindProxy(t, func(c *localqueue.Config) { c.ClaimTimeout = 30 * time.Second })
	cfg := q.workerConfig("queue-down")
	cfg.RootURL = p.URL
	cfg.Capacity = 3
	we := startWorker(t, q, cfg)

	var ids []string
	for _, secs := range []string{"2", "3", "4"} {
		ids = append(ids, q.create(t, newTask(cfg, shell("echo started; sleep "+secs+"; echo done-"+secs, 60))))
	}
	q.waitRunning(t, ids, 2*time.Minute)
	p.down()
	time.Sleep(10 * time.Second) // every task exits meanwhile
	p.up()
	back := time.Now()

	for i, id := range ids {
		s := q.waitRun(t, id, 0, time.Minute)
		wantState(t, s, 0, tc.StateCompleted, "completed")
		if len(s.Runs) != 1 {
			t.Errorf("task %s has %d runs, want 1", id, len(s.Runs))
		}
		// Resolved after the queue was back: the outage did hit the report.
		if r := s.Runs[0].Resolved; r.Before(back.Add(-time.Second)) {
			t.Errorf("task %s resolved at %v, before the queue was back (%v): the test proves nothing", id, r, back)
		}
		log := q.logOf(t, id, 0, "public/logs/live_backing.log")
		mustContain(t, log, "started", "done-"+[]string{"2", "3", "4"}[i], "Successful task run with exit code: 0")
	}
	noReportErrors(t, we)
}

// A reclaim answered 503 for longer than the client's 6 attempts is
// retried until takenUntil: the run keeps running past its first claim
// and completes.
func TestReclaimFailsTransiently(t *testing.T) {
	dockertestRequire(t)
	q, p := queueBehindProxy(t, func(c *localqueue.Config) { c.ClaimTimeout = 16 * time.Second })
	cfg := q.workerConfig("reclaim-503")
	cfg.RootURL = p.URL
	// The first reclaim is 4 s after the claim, 12 s before takenUntil.
	cfg.Task.ReclaimDivisor = 4
	we := startWorker(t, q, cfg)

	p.failReclaims(true)
	id := q.create(t, newTask(cfg, shell("echo started; sleep 18; echo done", 60)))
	for start := time.Now(); p.reclaimsFailed() < tc.DefaultRetries+1; time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > time.Minute {
			t.Fatalf("%d reclaims answered 503 after a minute", p.reclaimsFailed())
		}
	}
	p.failReclaims(false)

	s := q.waitRun(t, id, 0, time.Minute)
	wantState(t, s, 0, tc.StateCompleted, "completed")
	if len(s.Runs) != 1 {
		t.Errorf("%d runs, want 1", len(s.Runs))
	}
	mustContain(t, q.logOf(t, id, 0, "public/logs/live_backing.log"), "started", "done")
	if n := we.logs.count("reclaimed task"); n == 0 {
		t.Error("no successful reclaim logged")
	}
	noReportErrors(t, we)
}

// Every fourth request through the proxy answered 503: claims, reclaims,
// artifact and log uploads and reports are all retried; every task
// completes with its artifacts.
func TestQueueAnswers5xxOnAFraction(t *testing.T) {
	dockertestRequire(t)
	q, p := queueBehindProxy(t, func(c *localqueue.Config) { c.ClaimTimeout = 20 * time.Second })
	cfg := q.workerConfig("flaky-5xx")
	cfg.RootURL = p.URL
	cfg.Capacity = 2
	we := startWorker(t, q, cfg)
	p.failEvery(4)

	var ids []string
	for range 3 {
		payload := shell("echo hello > /out.txt; sleep 2; echo done", 60)
		payload["artifacts"] = map[string]any{"public/out.txt": map[string]any{"type": "file", "path": "/out.txt"}}
		ids = append(ids, q.create(t, newTask(cfg, payload)))
	}
	for _, id := range ids {
		s := q.waitRun(t, id, 0, 2*time.Minute)
		wantState(t, s, 0, tc.StateCompleted, "completed")
	}
	p.failEvery(0)
	for _, id := range ids {
		mustContain(t, q.logOf(t, id, 0, "public/logs/live_backing.log"), "done")
		if got := q.logOf(t, id, 0, "public/out.txt"); got != "hello\n" {
			t.Errorf("task %s: public/out.txt = %q, want hello", id, got)
		}
	}
	noReportErrors(t, we)
}

// docker-worker run with credentials the queue refuses: the claim loop
// stops after 3 refusals with an operator alert, and the command exits 3.
func TestRunExitsOnRejectedCredentials(t *testing.T) {
	dockertestRequire(t)
	bin := workerBinary(t)
	q := startQueue(t, nil)
	cfg := q.workerConfig("bad-credentials")
	cfg.Taskcluster = config.Credentials{ClientID: adminID, AccessToken: "not-the-token"}
	out := &logSink{}
	cmd := exec.Command(bin, "run", "--config", writeConfig(t, cfg))
	cmd.Env = append(os.Environ(), "TASKCLUSTER_ROOT_URL=", "TASKCLUSTER_CLIENT_ID=", "TASKCLUSTER_ACCESS_TOKEN=")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 {
			t.Errorf("docker-worker run exited with %v, want exit status 3", err)
		}
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatal("docker-worker run still running 2 minutes after starting with rejected credentials")
	}
	if !strings.Contains(out.String(), "[alert-operator] the queue rejects the worker's credentials") {
		t.Errorf("no operator alert in the output:\n%s", out.String())
	}
	if n := out.count("[alert-operator] task retrieval error"); n != 2 {
		t.Errorf("%d claim errors logged before stopping, want 2:\n%s", n, out.String())
	}
}
