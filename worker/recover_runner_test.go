package worker_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockerfake"
	"go.dockerworker.dev/docker-worker/worker/journal"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// A worker started on the state directory of a killed process finishes
// what that process left before it claims: the orphaned container is
// removed, a run whose claim is valid gets its log uploaded and is
// resolved worker-shutdown (and so retried at once), a run the process was
// resolving is resolved as it was about to be, an expired claim and an
// unreadable entry are dropped. A container of another worker with the
// same worker id (another state directory) is left alone.
func TestRecoveryAfterAKilledProcess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stateDir := t.TempDir()
		var valid, resolving, expired, orphan, stranger string
		events := &workerEvents{}
		e := start(t, setup{
			stateDir:   stateDir,
			extensions: []features.Extension{events},
			script: func(spec docker.ContainerSpec) dockerfake.Script {
				if spec.Labels["dev.dockerworker.run-id"] == "0" {
					return untilKilled
				}
				return dockerfake.Script{Steps: []dockerfake.Step{output("second run")}}
			},
			beforeRun: func(t *testing.T, admin *tc.Client, fake *dockerfake.Fake, cfg *config.Config) {
				pre := &env{t: t, admin: admin, cfg: cfg}
				valid = pre.createTask(payload(3600, "sleep", "infinity"))
				resolving = pre.createTask(payload(3600, "true"))
				expired = pre.createTask(payload(3600, "true"))
				resp, err := admin.ClaimWork(t.Context(), cfg.ProvisionerID+"/"+cfg.WorkerType, tc.ClaimWorkRequest{
					Tasks: 3, WorkerGroup: cfg.WorkerGroup, WorkerID: cfg.WorkerID})
				if err != nil || len(resp.Tasks) != 3 {
					t.Fatalf("claim: %v (%d tasks)", err, len(resp.Tasks))
				}
				j, err := journal.Open(stateDir)
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range resp.Tasks {
					claim := journal.Claim{TaskID: c.Status.TaskID, RunID: c.RunID, WorkerGroup: cfg.WorkerGroup,
						WorkerID: cfg.WorkerID, Credentials: c.Credentials, TakenUntil: c.TakenUntil, Expires: c.Task.Expires}
					if claim.TaskID == expired {
						claim.TakenUntil = time.Now().Add(-time.Second)
					}
					en, err := j.Begin(claim)
					if err != nil {
						t.Fatal(err)
					}
					en.Write([]byte("output before the crash\n"))
					if claim.TaskID == resolving {
						en.Resolving("completed")
					}
				}
				os.MkdirAll(filepath.Join(stateDir, "runs", "unreadable-0"), 0o700)
				labels := func(state string) map[string]string {
					return map[string]string{"dev.dockerworker.worker-id": cfg.WorkerID, "dev.dockerworker.state-id": state,
						"dev.dockerworker.task-id": valid, "dev.dockerworker.run-id": "0"}
				}
				for _, c := range []struct {
					id    *string
					state string
				}{{&orphan, j.ID()}, {&stranger, "another-state-directory"}} {
					if *c.id, err = fake.Create(t.Context(), docker.ContainerSpec{Image: testImage, Labels: labels(c.state)}); err != nil {
						t.Fatal(err)
					}
					if err := fake.Start(t.Context(), *c.id); err != nil {
						t.Fatal(err)
					}
				}
				j.Close() // the process dies: no Done
			},
		})

		st := e.waitRun(valid, 0)
		if r := st.Runs[0]; r.State != tc.StateException || r.ReasonResolved != tc.ReasonWorkerShutdown {
			t.Errorf("run 0 of the valid claim: %s/%s, want exception/worker-shutdown", r.State, r.ReasonResolved)
		}
		log, ok := e.taskLog(valid, 0)
		if !ok {
			t.Fatal("no task log uploaded for the recovered run")
		}
		for _, want := range []string{"output before the crash", "Task has been aborted prematurely. Reason: worker-shutdown"} {
			if !strings.Contains(log, want) {
				t.Errorf("recovered log lacks %q:\n%s", want, log)
			}
		}
		// The queue retries it at once, and this worker runs the retry.
		if st := e.waitRun(valid, 1); st.Runs[1].State != tc.StateCompleted {
			t.Errorf("retry: %+v", st.Runs[1])
		}
		if r := e.waitRun(resolving, 0).Runs[0]; r.State != tc.StateCompleted {
			t.Errorf("the run being resolved: %s/%s, want completed", r.State, r.ReasonResolved)
		}
		if r := e.status(expired).Runs[0]; r.State != tc.StateRunning {
			t.Errorf("the expired claim was reported: %s/%s", r.State, r.ReasonResolved)
		}

		removed := slices.Collect(func(yield func(string) bool) {
			for _, c := range e.docker.Removes() {
				if !yield(c.ID) {
					return
				}
			}
		})
		if !slices.Contains(removed, orphan) {
			t.Errorf("the orphaned container was not removed (removed %v)", removed)
		}
		if slices.Contains(removed, stranger) {
			t.Error("the container of another state directory was removed")
		}
		e.waitIdle(2)
		if ents, _ := os.ReadDir(filepath.Join(stateDir, "runs")); len(ents) != 0 {
			t.Errorf("journal entries left: %v", ents)
		}
		if n := e.logs.count("recovered what a previous process left"); n != 1 {
			t.Errorf("%d recovery summaries logged, want 1", n)
		}
		want := []features.Recovery{{ContainersRemoved: 1, RunsResolved: 2, RunsExpired: 1, RunsFailed: 1}}
		got := events.recoveries()
		if len(got) == 1 {
			got[0].Took = 0 // fake time: nothing to compare
		}
		if !slices.Equal(got, want) {
			t.Errorf("Recovered events %+v, want %+v", got, want)
		}
		e.docker.Remove(t.Context(), stranger)
	})
}

// workerEvents is an extension recording the worker's own events.
type workerEvents struct {
	mu     sync.Mutex
	events []features.WorkerEvent
}

func (w *workerEvents) Init(_ context.Context, h features.Host) error {
	h.Observe(w)
	return nil
}

func (w *workerEvents) RunEvent(features.Event) {}

func (w *workerEvents) WorkerEvent(ev features.WorkerEvent) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.events = append(w.events, ev)
}

func (w *workerEvents) recoveries() []features.Recovery {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []features.Recovery
	for _, ev := range w.events {
		if ev.Kind == features.Recovered {
			out = append(out, ev.Recovery)
		}
	}
	return out
}
