package worker_test

// Queue faults in the runner tier: the queue unreachable, answering 5xx,
// applying a report but losing its answer, refusing the worker's
// credentials. Each rule of fault handling (see the package's claimwindow.go)
// has a scenario here.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/worker"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockerfake"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// extraArtifact is the artifact the uploader feature uploads.
const extraArtifact = "public/extra.txt"

// uploader is an always-on feature that uploads extraArtifact through the
// run's Publisher in the Exited phase, as payload artifacts are.
type uploader struct{}

type uploaderTask struct{ t features.Task }

var _ features.Exiter = uploaderTask{}

func (uploader) Name() string   { return "testUploader" }
func (uploader) AlwaysOn() bool { return true }
func (uploader) NewTask(t features.Task) (features.TaskFeature, error) {
	return uploaderTask{t}, nil
}

func (u uploaderTask) Exited(ctx context.Context, _ *features.ExitedRequest) error {
	body := "extra artifact\n"
	err := u.t.Artifacts().Upload(ctx, features.Upload{
		Name:        extraArtifact,
		ContentType: "text/plain",
		Expires:     u.t.Expires(),
		Size:        int64(len(body)),
		Open: func(context.Context) (io.ReadCloser, error) {
			return io.NopCloser(strings.NewReader(body)), nil
		},
	})
	if err != nil {
		return fmt.Errorf("upload %s: %w", extraArtifact, err)
	}
	return nil
}

// exitsAfter is a script writing a line and exiting 0 after d.
func exitsAfter(d time.Duration) func(docker.ContainerSpec) dockerfake.Script {
	return script(dockerfake.Script{Steps: []dockerfake.Step{output("started"), {After: d, Output: "finished\r\n"}}})
}

// noResolveErrors checks that every report the worker sent ended as a
// resolution: nothing was logged as a failed report or given up.
func noResolveErrors(t *testing.T, e *env) {
	t.Helper()
	if got := e.logs.count("could not resolve task"); got != 0 {
		t.Errorf("%d 'could not resolve task' records", got)
	}
	for _, line := range strings.Split(e.logs.String(), "\n") {
		if strings.Contains(line, `"msg":"task resolved"`) && strings.Contains(line, "giving up") {
			t.Errorf("a report the queue applied logged as given up: %s", line)
		}
	}
}

// onlyResolution checks that the worker sent run 0 of the task one kind of
// resolution only, want ("completed", "failed" or "exception"), and returns
// those requests.
func onlyResolution(t *testing.T, e *env, taskID, want string) []request {
	t.Helper()
	var got []request
	for _, kind := range []string{"completed", "failed", "exception"} {
		reqs := e.faults.requests(taskID + "/runs/0/" + kind)
		if kind == want {
			got = reqs
		} else if len(reqs) > 0 {
			t.Errorf("the worker reported %s for a run it resolves %s", kind, want)
		}
	}
	return got
}

// TestRunnerFaults runs one task per scenario through a queue that fails
// in one way or another.
func TestRunnerFaults(t *testing.T) {
	for _, tt := range []scenario{
		{
			// The first reclaim falls in a 4-minute outage: it is retried
			// until the queue is back, and the run goes on.
			name:    "queue unreachable over a reclaim: the run keeps running",
			setup:   setup{script: exitsAfter(15 * time.Minute)},
			payload: payload(3600, "sleep", "900"),
			during: func(t *testing.T, e *env, _ string) {
				e.waitRunning()
				time.Sleep(9 * time.Minute)
				e.faults.setDown(true)
				time.Sleep(4 * time.Minute)
				e.faults.setDown(false)
			},
			wantRuns: []runWant{{"completed", "scheduled", "completed"}},
			wantLog:  []string{"started", "finished", "Successful task run with exit code: 0"},
			check: func(t *testing.T, e *env, taskID string) {
				var failed int
				for _, r := range e.faults.requests(taskID + "/runs/0/reclaim") {
					if r.Faulted {
						failed++
					}
				}
				if failed < 2 {
					t.Errorf("%d reclaims failed, want the outage to fail several", failed)
				}
				if got := e.logs.count("error reclaiming task"); got != 0 {
					t.Errorf("%d 'error reclaiming task' records: the reclaim went through", got)
				}
				noResolveErrors(t, e)
			},
		},
		{
			// The queue goes away as the container exits and stays away
			// for 4 minutes (less than the 5 minutes the Finish phase may
			// take): the log upload and the report wait for it.
			name: "queue unreachable for 4 minutes as the task ends: log and report wait",
			setup: setup{
				script: exitsAfter(time.Minute),
				hooks: &hooks{exited: func(_ context.Context, e *env) error {
					e.outage.Do(func() {
						e.faults.setDown(true)
						go func() {
							time.Sleep(4 * time.Minute)
							e.faults.setDown(false)
						}()
					})
					return nil
				}},
			},
			payload:  payload(600, "true"),
			wantRuns: []runWant{{"completed", "scheduled", "completed"}},
			wantLog:  []string{"finished", "Successful task run with exit code: 0"},
			check: func(t *testing.T, e *env, taskID string) {
				var failed int
				for _, r := range e.faults.requests(taskID + "/runs/0/artifacts/" + logArtifact) {
					if r.Faulted {
						failed++
					}
				}
				if failed <= tc.DefaultRetries+1 {
					t.Errorf("%d failed log uploads, want more than the client's %d attempts", failed, tc.DefaultRetries+1)
				}
				onlyResolution(t, e, taskID, "completed")
				noResolveErrors(t, e)
			},
		},
		{
			// The queue is unreachable from the end of the task for longer
			// than the Finish phase may take: the log cannot be uploaded,
			// and the run is resolved worker-shutdown (retried by the
			// queue) once the queue is back, within the claim.
			name: "queue unreachable for 10 minutes as the task ends: worker-shutdown",
			setup: setup{
				script: exitsAfter(time.Minute),
				hooks: &hooks{exited: func(_ context.Context, e *env) error {
					e.outage.Do(func() {
						e.faults.setDown(true)
						go func() {
							time.Sleep(10 * time.Minute)
							e.faults.setDown(false)
						}()
					})
					return nil
				}},
			},
			payload: payload(600, "true"),
			wantRuns: []runWant{
				{"exception", "scheduled", "worker-shutdown"},
				{"completed", "retry", "completed"},
			},
			check: func(t *testing.T, e *env, taskID string) {
				onlyResolution(t, e, taskID, "exception")
				noResolveErrors(t, e)
			},
		},
		{
			// The queue applies reportCompleted but the worker gets a 409:
			// the task's status shows the run completed, as asked.
			name: "reportCompleted applied but answered 409: resolved",
			setup: setup{
				script: exitsAfter(time.Minute),
				hooks: &hooks{finish: func(_ context.Context, e *env) error {
					e.faults.setAfter(fault{"POST", "/runs/0/completed", http.StatusConflict})
					return nil
				}},
			},
			payload:  payload(600, "true"),
			wantRuns: []runWant{{"completed", "scheduled", "completed"}},
			wantLog:  []string{"finished"},
			check: func(t *testing.T, e *env, taskID string) {
				if got := len(onlyResolution(t, e, taskID, "completed")); got != 1 {
					t.Errorf("%d reportCompleted calls, want 1", got)
				}
				if got := e.logs.count("task resolved"); got != 1 {
					t.Errorf("%d 'task resolved' records, want 1", got)
				}
				if got := e.logs.count("task already resolved by the queue"); got != 0 {
					t.Errorf("%d 'task already resolved by the queue' records: the run holds our resolution", got)
				}
				noResolveErrors(t, e)
			},
		},
		{
			// reportCompleted hangs (no answer, no error) for 2 minutes:
			// each attempt is abandoned after its timeout and retried,
			// and the report goes through once the queue answers again.
			name: "reportCompleted hanging for 2 minutes: retried after each timeout",
			setup: setup{
				script: exitsAfter(time.Minute),
				hooks: &hooks{finish: func(_ context.Context, e *env) error {
					e.outage.Do(func() {
						e.faults.set(fault{"POST", "/runs/0/completed", -1})
						go func() {
							time.Sleep(2 * time.Minute)
							e.faults.set()
						}()
					})
					return nil
				}},
			},
			payload:  payload(600, "true"),
			wantRuns: []runWant{{"completed", "scheduled", "completed"}},
			wantLog:  []string{"finished"},
			check: func(t *testing.T, e *env, taskID string) {
				reqs := onlyResolution(t, e, taskID, "completed")
				var hung int
				for _, r := range reqs {
					if r.Faulted {
						hung++
					}
				}
				if hung < 2 || len(reqs) != hung+1 {
					t.Errorf("%d reportCompleted calls, %d of them hung: want several hung, then one answered", len(reqs), hung)
				}
				noResolveErrors(t, e)
			},
		},
		{
			// Every reportCompleted is applied but its answer lost: the
			// worker retries (the queue answers a repeated resolution with
			// the status, but that answer is lost too) until the claim's
			// window ends, then reads the status: resolved, no error.
			name: "reportCompleted applied but every answer lost: resolved",
			setup: setup{
				script: exitsAfter(time.Minute),
				hooks: &hooks{finish: func(_ context.Context, e *env) error {
					e.faults.setAfter(fault{"POST", "/runs/0/completed", 0})
					return nil
				}},
			},
			payload:  payload(600, "true"),
			wantRuns: []runWant{{"completed", "scheduled", "completed"}},
			wantLog:  []string{"finished"},
			idle:     true,
			check: func(t *testing.T, e *env, taskID string) {
				if got := len(onlyResolution(t, e, taskID, "completed")); got <= tc.DefaultRetries+1 {
					t.Errorf("%d reportCompleted calls, want them retried past the client's %d attempts", got, tc.DefaultRetries+1)
				}
				if got := e.logs.count("task resolved"); got != 1 {
					t.Errorf("%d 'task resolved' records, want 1", got)
				}
				noResolveErrors(t, e)
			},
		},
		{
			// reportCompleted fails with 503 for good: it is retried until
			// the claim runs out and never replaced by another resolution;
			// the queue then expires the claim and retries the task.
			name: "reportCompleted failing with 503 for the whole claim: one resolution, retried to the end",
			setup: setup{
				script: exitsAfter(time.Minute),
				faults: []fault{{"POST", "/runs/0/completed", http.StatusServiceUnavailable}},
			},
			payload: payload(600, "true"),
			wantRuns: []runWant{
				{"exception", "scheduled", "claim-expired"},
				{"completed", "retry", "completed"},
			},
			wantLog: []string{"finished", "Successful task run with exit code: 0"},
			check: func(t *testing.T, e *env, taskID string) {
				reqs := onlyResolution(t, e, taskID, "completed")
				if len(reqs) <= tc.DefaultRetries+1 {
					t.Fatalf("%d reportCompleted calls, want them retried past the client's %d attempts", len(reqs), tc.DefaultRetries+1)
				}
				// Claimed at 0, exited at 1 minute, takenUntil at 20.
				if d := reqs[len(reqs)-1].At.Sub(reqs[0].At); d < 15*time.Minute {
					t.Errorf("reportCompleted retried for %v, want until takenUntil, 19 minutes after the first", d)
				}
				if got := e.logs.count("could not resolve task"); got != 1 {
					t.Errorf("%d 'could not resolve task' records, want 1", got)
				}
			},
		},
		{
			// The task log cannot be uploaded because the queue answers
			// 503: the task did nothing wrong, so the run is resolved
			// worker-shutdown, which the queue retries.
			name: "task log upload failing with 503: worker-shutdown, retried by the queue",
			setup: setup{
				script: exitsAfter(time.Minute),
				faults: []fault{{"POST", "/runs/0/artifacts/" + logArtifact, http.StatusServiceUnavailable}},
			},
			payload: payload(600, "true"),
			wantRuns: []runWant{
				{"exception", "scheduled", "worker-shutdown"},
				{"completed", "retry", "completed"},
			},
			check: func(t *testing.T, e *env, taskID string) {
				if got := len(e.faults.requests(taskID + "/runs/0/artifacts/" + logArtifact)); got <= tc.DefaultRetries+1 {
					t.Errorf("%d log uploads, want them retried past the client's %d attempts", got, tc.DefaultRetries+1)
				}
				onlyResolution(t, e, taskID, "exception")
			},
		},
		{
			// An artifact upload the queue keeps answering 503: the run is
			// resolved worker-shutdown, and the task log is uploaded.
			name: "artifact upload failing with 503: worker-shutdown, task log uploaded",
			setup: setup{
				script: exitsAfter(time.Minute),
				extra:  []features.Feature{uploader{}},
				faults: []fault{{"POST", "/runs/0/artifacts/" + extraArtifact, http.StatusServiceUnavailable}},
			},
			payload: payload(600, "true"),
			wantRuns: []runWant{
				{"exception", "scheduled", "worker-shutdown"},
				{"completed", "retry", "completed"},
			},
			wantLog: []string{"finished", "Unsuccessful task run with exit code: -1"},
			check: func(t *testing.T, e *env, taskID string) {
				if got := len(e.faults.requests(taskID + "/runs/0/artifacts/" + extraArtifact)); got <= tc.DefaultRetries+1 {
					t.Errorf("%d artifact uploads, want them retried past the client's %d attempts", got, tc.DefaultRetries+1)
				}
			},
		},
		{
			// An artifact the queue refuses (400): the task's fault, the
			// run fails as in docker-worker; the task log is uploaded.
			name: "artifact refused with 400: failed, task log uploaded",
			setup: setup{
				script: exitsAfter(time.Minute),
				extra:  []features.Feature{uploader{}},
				faults: []fault{{"POST", "/runs/0/artifacts/" + extraArtifact, http.StatusBadRequest}},
			},
			payload:  payload(600, "true"),
			wantRuns: []runWant{{"failed", "scheduled", "failed"}},
			wantLog:  []string{"finished", "Unsuccessful task run with exit code: -1"},
			check: func(t *testing.T, e *env, taskID string) {
				if got := len(e.faults.requests(taskID + "/runs/0/artifacts/" + extraArtifact)); got != 1 {
					t.Errorf("%d artifact uploads, want 1: a 400 is not retried", got)
				}
			},
		},
		{
			// The artifact's storage PUT fails with a network error for 3
			// minutes: retried, and the run completes with both artifacts.
			name: "artifact upload unreachable for 3 minutes: completed",
			setup: setup{
				script: exitsAfter(time.Minute),
				extra:  []features.Feature{uploader{}},
				hooks: &hooks{exited: func(_ context.Context, e *env) error {
					e.faults.set(fault{"POST", "/runs/0/artifacts/" + extraArtifact, 0})
					go func() {
						time.Sleep(3 * time.Minute)
						e.faults.set()
					}()
					return nil
				}},
			},
			payload:  payload(600, "true"),
			wantRuns: []runWant{{"completed", "scheduled", "completed"}},
			wantLog:  []string{"finished", "Successful task run with exit code: 0"},
			check: func(t *testing.T, e *env, taskID string) {
				var buf strings.Builder
				if _, err := e.admin.Download(t.Context(), e.admin.ArtifactURL(taskID, 0, extraArtifact), &buf); err != nil {
					t.Errorf("download %s: %v", extraArtifact, err)
				}
				noResolveErrors(t, e)
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) { runScenario(t, tt) })
	}
}

// claimPath is the claimWork path suffix of the harness's worker.
const claimPath = "/claim-work/null-provisioner/fake-docker"

// TestClaimCredentialsRejected: claimWork refused (401 or 403) three times
// in a row stops the worker with ErrCredentialsRejected and an operator
// alert; fewer refusals, or other errors, are retried.
func TestClaimCredentialsRejected(t *testing.T) {
	rejected := func(t *testing.T, e *env) {
		t.Helper()
		err := e.runErr()
		if !errors.Is(err, worker.ErrCredentialsRejected) {
			t.Fatalf("Run = %v, want ErrCredentialsRejected", err)
		}
		if got := len(e.faults.requests(claimPath)); got != 3 {
			t.Errorf("%d claimWork calls, want 3", got)
		}
		var alerts int
		for _, line := range strings.Split(e.logs.String(), "\n") {
			if strings.Contains(line, "[alert-operator] the queue rejects the worker's credentials") {
				alerts++
			}
		}
		if alerts != 1 {
			t.Errorf("%d credential alerts, want 1", alerts)
		}
	}
	t.Run("401", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := start(t, setup{faults: []fault{{"POST", claimPath, http.StatusUnauthorized}}})
			rejected(t, e)
		})
	})
	t.Run("403 from the queue's scope check", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := start(t, setup{workerScopes: []string{"queue:status:*"}})
			rejected(t, e)
			if got := e.faults.requests(claimPath); len(got) > 0 && got[0].Faulted {
				t.Error("the 403 was injected, want the queue's own")
			}
		})
	})
	t.Run("running tasks finish first", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := start(t, setup{
				config: func(c *config.Config) { c.Capacity = 2 },
				script: exitsAfter(5 * time.Minute),
			})
			taskID := e.createTask(payload(600, "sleep", "300"))
			e.waitRunning()
			e.faults.set(fault{"POST", claimPath, http.StatusForbidden})
			if err := e.runErr(); !errors.Is(err, worker.ErrCredentialsRejected) {
				t.Fatalf("Run = %v, want ErrCredentialsRejected", err)
			}
			if st := e.status(taskID); st.Runs[0].State != tc.StateCompleted {
				t.Errorf("the running task ended %s/%s, want completed before Run returned", st.Runs[0].State, st.Runs[0].ReasonResolved)
			}
		})
	})
	t.Run("two refusals, then accepted", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := start(t, setup{faults: []fault{{"POST", claimPath, http.StatusUnauthorized}}})
			e.waitFor("two refused claims", time.Second, func() bool { return len(e.faults.requests(claimPath)) >= 2 })
			e.faults.set()
			taskID := e.createTask(payload(600, "true"))
			if st := e.waitRun(taskID, 0); st.Runs[0].State != tc.StateCompleted {
				t.Errorf("task %s/%s, want completed", st.Runs[0].State, st.Runs[0].ReasonResolved)
			}
		})
	})
	t.Run("refusals interleaved with 5xx do not count", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := start(t, setup{})
			// answered counts the claims answered status since from.
			answered := func(status int, from time.Time) int {
				n := 0
				for _, r := range e.faults.requests(claimPath) {
					if r.Status == status && !r.At.Before(from) {
						n++
					}
				}
				return n
			}
			for _, step := range []struct {
				status, n int
			}{
				{http.StatusUnauthorized, 2},
				// Every attempt of one claimWork call: its error is a 503.
				{http.StatusServiceUnavailable, tc.DefaultRetries + 1},
				{http.StatusForbidden, 2},
			} {
				from := time.Now()
				e.faults.set(fault{"POST", claimPath, step.status})
				e.waitFor(fmt.Sprintf("%d claims answered %d", step.n, step.status), time.Second, func() bool { return answered(step.status, from) >= step.n })
			}
			e.faults.set()
			taskID := e.createTask(payload(600, "true"))
			if st := e.waitRun(taskID, 0); st.Runs[0].State != tc.StateCompleted {
				t.Errorf("task %s/%s, want completed", st.Runs[0].State, st.Runs[0].ReasonResolved)
			}
		})
	})
	t.Run("other errors are retried forever", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := start(t, setup{faults: []fault{{"POST", claimPath, http.StatusInternalServerError}}})
			e.waitFor("ten failed claims", time.Second, func() bool {
				return len(e.faults.requests(claimPath)) >= 10*(tc.DefaultRetries+1)
			})
			e.faults.set()
			taskID := e.createTask(payload(600, "true"))
			if st := e.waitRun(taskID, 0); st.Runs[0].State != tc.StateCompleted {
				t.Errorf("task %s/%s, want completed", st.Runs[0].State, st.Runs[0].ReasonResolved)
			}
		})
	})
}
