package e2e

import (
	"context"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
	"go.dockerworker.dev/docker-worker/worker/tc"
	"go.dockerworker.dev/docker-worker/worker/wiring"
)

// The Docker daemon is never stopped here (other tests use it): the
// worker talks to it through a dockertest.Proxy, which the tests cut and
// restore. A cut closes every connection and removes the socket, as a
// daemon that stops does.

const (
	alertMsg   = "[alert-operator] docker daemon unreachable"
	resumedMsg = "docker daemon answers again; claiming resumes"
	workerIDLb = "dev.dockerworker.worker-id"
)

// faultEnv is a worker whose Docker client goes through a proxy, and a
// direct client to the daemon for the test.
type faultEnv struct {
	proxy  *dockertest.Proxy
	direct *docker.Client
	cfg    *config.Config
	logs   *logSink
	stop   func()
}

func startFaultWorker(t *testing.T, q *queueEnv, workerType string) *faultEnv {
	t.Helper()
	direct := dockertest.Require(t)
	proxy := dockertest.NewProxy(t)
	dc, err := docker.NewHost(t.Context(), proxy.Host())
	if err != nil {
		t.Fatalf("connect through the proxy: %v", err)
	}
	cfg := q.workerConfig(workerType)
	off := false
	cfg.Features = map[string]config.FeatureConfig{"localLiveLog": {Enabled: &off}}
	cfg.Logging.LiveLogBindAddress = "127.0.0.1"
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
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(2 * time.Minute):
			t.Error("worker did not stop")
		}
		if err := w.Close(); err != nil {
			t.Errorf("close worker: %v", err)
		}
		if err := dc.Close(); err != nil {
			t.Errorf("close docker client: %v", err)
		}
	}
	t.Cleanup(func() {
		proxy.Restore() // so that the worker can clean up
		stop()
		if t.Failed() {
			t.Logf("worker log:\n%s", logs.String())
		}
	})
	return &faultEnv{proxy: proxy, direct: direct, cfg: cfg, logs: logs, stop: stop}
}

// eventually polls cond every 100ms until it holds, failing after within.
func eventually(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s after %v", what, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// containers are the worker's task containers, as the daemon has them.
func (e *faultEnv) containers(t *testing.T) []docker.ContainerState {
	t.Helper()
	cs, err := e.direct.ListContainers(t.Context(), map[string]string{workerIDLb: e.cfg.WorkerID})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// noStrayGoroutines stops the worker and checks that none of its
// goroutines outlive it: no goroutine may still be in the worker's
// packages or the Docker client. It polls, as goroutines take a moment to
// return after their work ends.
func (e *faultEnv) noStrayGoroutines(t *testing.T) {
	t.Helper()
	e.stop()
	markers := []string{
		"go.dockerworker.dev/docker-worker/worker.",
		"go.dockerworker.dev/docker-worker/worker/docker.",
		"go.dockerworker.dev/docker-worker/worker/dockerhealth.",
		"go.dockerworker.dev/docker-worker/features/",
		"github.com/moby/moby/client.",
	}
	var stray []string
	for deadline := time.Now().Add(30 * time.Second); ; {
		stray = stray[:0]
		buf := make([]byte, 1<<22)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			for _, m := range markers {
				if strings.Contains(g, m) {
					stray = append(stray, g)
					break
				}
			}
		}
		if len(stray) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(stray) > 0 {
		t.Errorf("%d goroutines of the worker outlive it:\n%s", len(stray), strings.Join(stray, "\n\n"))
	}
}

// A running task whose Docker daemon goes away (its connection cut and
// its container killed, as a daemon restart does) is resolved
// exception/worker-shutdown, its log naming the fault and uploaded. The
// worker goes on: it holds its claims with an operator alert while the
// daemon is gone and, once the daemon answers, removes the container the
// fault left.
func TestDockerFaultCutsOffARunningTask(t *testing.T) {
	q := startQueue(t, nil)
	e := startFaultWorker(t, q, "docker-faults-running")
	def := newTask(e.cfg, shell("echo task-started; sleep 600", 600))
	def["retries"] = 0 // the queue would run it again; one run is enough here
	id := q.create(t, def)

	var cid string
	eventually(t, "the task container to run", 2*time.Minute, func() bool {
		for _, c := range e.containers(t) {
			if c.Running() {
				cid = c.ID
				return true
			}
		}
		return false
	})
	e.proxy.Cut()
	if err := e.direct.Kill(t.Context(), cid); err != nil {
		t.Fatalf("kill the task container: %v", err)
	}
	cut := time.Now()

	st := q.waitRun(t, id, 0, time.Minute)
	wantState(t, st, 0, tc.StateException, "worker-shutdown")
	t.Logf("resolved %v after the cut", time.Since(cut).Round(time.Millisecond))
	log := q.logOf(t, id, 0, "")
	mustContain(t, log, "task-started", "[taskcluster:error] Docker daemon unreachable: ",
		"Task has been aborted prematurely. Reason: worker-shutdown")

	eventually(t, "the operator alert", 30*time.Second, func() bool { return e.logs.count(alertMsg) > 0 })
	if got := e.containers(t); len(got) != 1 {
		t.Errorf("while the daemon is gone its containers are out of reach: want the task's container left, got %v", got)
	}

	e.proxy.Restore()
	eventually(t, "claiming to resume", 30*time.Second, func() bool { return e.logs.count(resumedMsg) > 0 })
	eventually(t, "the task container to be removed", 30*time.Second, func() bool { return len(e.containers(t)) == 0 })
	if n := e.logs.count("removed a task container left by the Docker fault"); n != 1 {
		t.Errorf("%d removals of left containers logged, want 1", n)
	}
	e.noStrayGoroutines(t)
}

// While the daemon does not answer the worker claims nothing (a pending
// task stays pending) and raises the operator alert once; when the daemon
// answers again it says so, claims the task and completes it.
func TestDockerFaultHoldsClaims(t *testing.T) {
	q := startQueue(t, nil)
	e := startFaultWorker(t, q, "docker-faults-claims")
	eventually(t, "the worker to start", 30*time.Second, func() bool { return e.logs.count("start") > 0 })

	e.proxy.Cut()
	eventually(t, "the operator alert", 30*time.Second, func() bool { return e.logs.count(alertMsg) > 0 })
	id := q.create(t, newTask(e.cfg, shell("echo resumed-ok", 60)))
	// With a 100ms poll interval a claiming worker would take the task
	// within a second or so; give it several.
	time.Sleep(5 * time.Second)
	resp, err := q.admin.Status(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if s := resp.Status; s.State != tc.StatePending || len(s.Runs) != 1 {
		t.Fatalf("task claimed while the daemon was gone: %+v", s)
	}
	if n := e.logs.count(alertMsg); n != 1 {
		t.Errorf("%d alerts during a cut shorter than a minute, want 1", n)
	}
	limited := false
	for _, rec := range e.logs.records("claiming fewer tasks") {
		if r, _ := rec["reason"].(string); strings.Contains(r, "docker daemon unreachable") {
			limited = true
		}
	}
	if !limited {
		t.Error(`no "claiming fewer tasks" record names the daemon`)
	}

	e.proxy.Restore()
	st := q.waitRun(t, id, 0, time.Minute)
	wantState(t, st, 0, tc.StateCompleted, "")
	mustContain(t, q.logOf(t, id, 0, ""), "resumed-ok")
	if n := e.logs.count(resumedMsg); n != 1 {
		t.Errorf("%d resumption records, want 1", n)
	}
	eventually(t, "the task container to be removed", 30*time.Second, func() bool { return len(e.containers(t)) == 0 })
	e.noStrayGoroutines(t)
}
