package worker_test

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/docker/dockerfake"
	"go.dockerworker.dev/docker-worker/worker/taskerr"
)

// recorder is an extension that records run events and can hold the claim
// loop at an allowance.
type recorder struct {
	mu      sync.Mutex
	events  []features.Event
	allow   int // -1: no limit
	reason  string
	started bool
	initErr error
}

func (r *recorder) Init(_ context.Context, h features.Host) error {
	if r.initErr != nil {
		return r.initErr
	}
	h.Observe(r)
	h.BeforeClaim(func(_ context.Context, want int) (int, string) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.allow < 0 {
			return want, ""
		}
		return r.allow, r.reason
	})
	h.BeforeFirstClaim(func(context.Context) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.started = true
		return nil
	})
	return nil
}

func (r *recorder) RunEvent(ev features.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
}

func (r *recorder) setAllow(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.allow = n
}

// kinds lists the events of one task as "kind[:phase|state]".
func (r *recorder) kinds(taskID string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, ev := range r.events {
		if ev.Run.TaskID != taskID {
			continue
		}
		switch ev.Kind {
		case features.Claimed:
			out = append(out, "claimed")
		case features.PhaseReached:
			out = append(out, "phase:"+ev.Phase)
		case features.FirstOutput:
			out = append(out, "output")
		case features.Resolved:
			out = append(out, "resolved:"+ev.State)
		}
	}
	return out
}

// An observer sees a run's events in order, the first output between the
// start and the exit.
func TestObserverSeesRunEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{allow: -1}
		e := start(t, setup{
			script:     script(dockerfake.Script{Steps: []dockerfake.Step{{After: time.Second, Output: "hi\r\n"}}}),
			extensions: []features.Extension{rec},
		})
		id := e.createTask(payload(60, "echo", "hi"))
		e.waitRun(id, 0)
		e.waitIdle(1)
		if !rec.started {
			t.Error("the before-first-claim hook did not run")
		}
		want := []string{"claimed", "phase:image", "phase:created", "phase:started", "output", "phase:exited",
			"phase:artifacts", "phase:logUploaded", "phase:resolved", "resolved:completed"}
		if diff := cmp.Diff(want, rec.kinds(id)); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
	})
}

// A before-claim hook allowing nothing keeps a pending task unclaimed (and
// says why, once); once it allows, the task runs.
func TestBeforeClaimHoldsClaims(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{allow: 0, reason: "disk nearly full"}
		e := start(t, setup{extensions: []features.Extension{rec}})
		id := e.createTask(payload(60, "true"))
		time.Sleep(10 * time.Minute)
		if st := e.status(id); len(st.Runs) != 1 || st.Runs[0].State != "pending" {
			t.Fatalf("task claimed while the hook allows nothing: %+v", st.Runs)
		}
		if n := e.logs.count("claiming fewer tasks"); n != 1 {
			t.Errorf("%d 'claiming fewer tasks' records, want one", n)
		}
		if !strings.Contains(e.logs.String(), "disk nearly full") {
			t.Error("the hook's reason is not logged")
		}
		rec.setAllow(-1)
		if st := e.waitRun(id, 0); st.Runs[0].State != "completed" {
			t.Errorf("after the hook allowed it: %+v", st.Runs[0])
		}
	})
}

// An extension that cannot start stops the worker before any claim.
func TestExtensionInitErrorStopsTheWorker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		boom := errors.New("no devices")
		e := start(t, setup{extensions: []features.Extension{&recorder{initErr: boom}}})
		if err := e.runErr(); !errors.Is(err, boom) {
			t.Errorf("Run = %v, want %v", err, boom)
		}
	})
}

// phaseRecorder is a payload-independent feature recording its phases in
// a shared list; it can fail or panic in Prepare.
type phaseRecorder struct {
	name    string
	log     *[]string
	mu      *sync.Mutex
	prepare func() error
}

func (f *phaseRecorder) Name() string                                        { return f.name }
func (f *phaseRecorder) AlwaysOn() bool                                      { return true }
func (f *phaseRecorder) NewTask(features.Task) (features.TaskFeature, error) { return f, nil }

func (f *phaseRecorder) note(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	*f.log = append(*f.log, f.name+":"+s)
}

func (f *phaseRecorder) Prepare(context.Context, *features.PrepareRequest, *features.PrepareResponse) error {
	f.note("prepare")
	if f.prepare != nil {
		return f.prepare()
	}
	return nil
}

func (f *phaseRecorder) Cleanup(context.Context) error {
	f.note("cleanup")
	return nil
}

// A failing Prepare stops the Prepares after it; every feature is cleaned
// up, in reverse order; no container is created.
func TestPrepareFailureStopsAndCleansUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var log []string
		mk := func(name string, prep func() error) *phaseRecorder {
			return &phaseRecorder{name: name, log: &log, mu: &mu, prepare: prep}
		}
		e := start(t, setup{extra: []features.Feature{
			mk("a", nil),
			mk("b", func() error { return taskerr.ResourceUnavailable(errors.New("no loopback device free")) }),
			mk("c", nil),
		}})
		id := e.createTask(payload(60, "true"))
		st := e.waitRun(id, 0)
		if r := st.Runs[0]; r.State != "exception" || r.ReasonResolved != "resource-unavailable" {
			t.Errorf("run %s/%s, want exception/resource-unavailable", r.State, r.ReasonResolved)
		}
		e.waitFor("cleanup", time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(log) >= 5 })
		mu.Lock()
		got := slices.Clone(log)
		mu.Unlock()
		if diff := cmp.Diff([]string{"a:prepare", "b:prepare", "c:cleanup", "b:cleanup", "a:cleanup"}, got); diff != "" {
			t.Errorf("phases (-want +got):\n%s", diff)
		}
		if n := len(e.docker.Containers()); n != 0 {
			t.Errorf("%d containers created after a failed Prepare", n)
		}
		if l, _ := e.taskLog(id, 0); !strings.Contains(l, "no loopback device free") {
			t.Errorf("task log lacks the Prepare error:\n%s", l)
		}
	})
}

// A panic in a feature resolves that run internal-error; the worker goes
// on with the next task.
func TestFeaturePanicIsAnInternalError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var log []string
		panics := true
		f := &phaseRecorder{name: "fragile", log: &log, mu: &mu, prepare: func() error {
			mu.Lock()
			p := panics
			panics = false
			mu.Unlock()
			if p {
				var m map[string]int
				m["boom"]++ // a nil map write
			}
			return nil
		}}
		e := start(t, setup{extra: []features.Feature{f}})
		first := e.createTask(payload(60, "true"))
		if r := e.waitRun(first, 0).Runs[0]; r.State != "exception" || r.ReasonResolved != "internal-error" {
			t.Errorf("panicking run %s/%s, want exception/internal-error", r.State, r.ReasonResolved)
		}
		if l, _ := e.taskLog(first, 0); !strings.Contains(l, "fragile panicked in prepare") {
			t.Errorf("task log lacks the panic:\n%s", l)
		}
		second := e.createTask(payload(60, "true"))
		if r := e.waitRun(second, 0).Runs[0]; r.State != "completed" {
			t.Errorf("next task %s/%s, want completed", r.State, r.ReasonResolved)
		}
	})
}

// runErr waits for Run to return by itself and returns its error.
func (e *env) runErr() error {
	e.t.Helper()
	select {
	case err := <-e.done:
		e.done <- nil // the cleanup's shutdown returns at once
		return err
	case <-time.After(time.Hour):
		e.t.Fatal("Run did not return")
		return nil
	}
}

// Status polling on a deployment where the worker's client lacks
// queue:status: with an anonymous role granting it, a cancelled task still
// stops within the poll interval; with neither, the worker warns once and
// the cancellation is noticed at the next reclaim.
func TestStatusPollScopes(t *testing.T) {
	workerScopes := []string{"queue:claim-work:null-provisioner/fake-docker", "queue:worker-id:fake-group/fake-worker"}
	none := []string{}
	anon := []string{"queue:status:*"}
	for _, tc := range []struct {
		name       string
		anonymous  *[]string
		within     time.Duration
		wantWarned int
	}{
		{"anonymous role grants status", &anon, 5 * time.Second, 0},
		{"nobody may read the status", &none, 10 * time.Minute, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := start(t, setup{
					config: func(c *config.Config) {
						c.Task.StatusPollInterval = 5000
						c.Task.ReclaimDivisor = 2 // reclaim every ~10 minutes of the 20-minute claim
					},
					script:          script(untilKilled),
					workerScopes:    workerScopes,
					anonymousScopes: tc.anonymous,
				})
				id := e.createTask(payload(3600, "sleep", "infinity"))
				e.waitRunning()
				time.Sleep(time.Minute)
				cancelled := time.Now()
				if _, err := e.admin.CancelTask(t.Context(), id); err != nil {
					t.Fatal(err)
				}
				e.waitIdle(1)
				kills := e.docker.Kills()
				if len(kills) == 0 {
					t.Fatal("the container was not killed")
				}
				if d := kills[0].At.Sub(cancelled); d > tc.within {
					t.Errorf("killed %v after cancelTask, want within %v", d, tc.within)
				}
				if n := e.logs.count("[alert-operator] cannot poll task status: the queue refuses queue.status to the worker's client and to anonymous requests; cancelled tasks are noticed at the next reclaim. Grant queue:status:* to the worker's role (or the anonymous role) to stop cancelled tasks within task.statusPollInterval"); n != tc.wantWarned {
					t.Errorf("%d status warnings, want %d", n, tc.wantWarned)
				}
			})
		})
	}
}

// lateWriter writes to the task log in Finish, which comes after the log
// is sealed.
type lateWriter struct{}

func (lateWriter) Name() string   { return "lateWriter" }
func (lateWriter) AlwaysOn() bool { return true }
func (lateWriter) NewTask(t features.Task) (features.TaskFeature, error) {
	return lateWriterTask{t}, nil
}

type lateWriterTask struct{ t features.Task }

func (k lateWriterTask) Finish(context.Context, *features.FinishRequest) error {
	_, err := io.WriteString(k.t.Log(), "a line written in Finish\n")
	return err
}

// The task log is sealed before Finish: what a feature writes then, even
// one whose Finish runs before the log's upload, is not in the log.
func TestLogSealedBeforeFinish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := start(t, setup{first: []features.Feature{lateWriter{}}})
		id := e.createTask(payload(60, "true"))
		if r := e.waitRun(id, 0).Runs[0]; r.State != "completed" {
			t.Fatalf("run %s/%s", r.State, r.ReasonResolved)
		}
		l, ok := e.taskLog(id, 0)
		if !ok || !strings.Contains(l, "Successful task run") {
			t.Fatalf("no complete task log:\n%s", l)
		}
		if strings.Contains(l, "a line written in Finish") {
			t.Errorf("a line written in Finish reached the uploaded log:\n%s", l)
		}
	})
}
