package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.dockerworker.dev/docker-worker/worker"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockerfake"
	"go.dockerworker.dev/docker-worker/worker/journal"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// gatedRemove holds every container removal until open is closed (or the
// call's context ends).
type gatedRemove struct {
	*dockerfake.Fake
	open chan struct{}

	mu      sync.Mutex
	waiting int
}

func newGatedRemove() *gatedRemove { return &gatedRemove{open: make(chan struct{})} }

func (g *gatedRemove) wrap(f *dockerfake.Fake) worker.Docker {
	g.Fake = f
	return g
}

func (g *gatedRemove) Remove(ctx context.Context, id string) error {
	g.mu.Lock()
	g.waiting++
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.waiting--
		g.mu.Unlock()
	}()
	select {
	case <-g.open:
	case <-ctx.Done():
		return fmt.Errorf("remove container %s: %w", id, ctx.Err())
	}
	return g.Fake.Remove(ctx, id)
}

func (g *gatedRemove) pending() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waiting
}

func removed(cs []dockerfake.Container) int {
	n := 0
	for _, c := range cs {
		if c.Removed {
			n++
		}
	}
	return n
}

// A run is resolved before its container is removed, and leaves the run
// registry and its slot to the next task meanwhile: with capacity 1 and the first removal held, the
// second task runs and resolves; both containers are removed once the
// removals go through, and the timings record ends with the removal.
func TestContainerRemovedAfterResolution(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGatedRemove()
		e := start(t, setup{docker: g.wrap, config: func(c *config.Config) { c.Capacity = 1 }})
		first := e.createTask(payload(600, "true"))
		if r := e.waitRun(first, 0).Runs[0]; r.State != tc.StateCompleted {
			t.Fatalf("first task: %s/%s, want completed", r.State, r.ReasonResolved)
		}
		synctest.Wait()
		if cs := e.docker.Containers(); len(cs) != 1 || removed(cs) != 0 || g.pending() != 1 {
			t.Fatalf("after the resolution: %d containers, %d removed, %d removals pending; want 1, 0, 1", len(cs), removed(cs), g.pending())
		}
		// The run is over for the worker: no slot, no registry entry.
		if n, runs := e.w.Running(), e.w.Runs().List(); n != 0 || len(runs) != 0 {
			t.Fatalf("after the resolution: %d running, registry %v; want none", n, runs)
		}
		second := e.createTask(payload(600, "true"))
		if r := e.waitRun(second, 0).Runs[0]; r.State != tc.StateCompleted {
			t.Fatalf("second task: %s/%s, want completed", r.State, r.ReasonResolved)
		}
		if cs := e.docker.Containers(); len(cs) != 2 || removed(cs) != 0 {
			t.Fatalf("second task resolved with %d containers, %d removed; want 2 and none removed yet", len(cs), removed(cs))
		}
		close(g.open)
		e.waitFor("both containers removed", time.Second, func() bool { return removed(e.docker.Containers()) == 2 })
		e.waitIdle(2)
		// The timings record is logged after the removal returns.
		e.waitFor("both task timings records", time.Second, func() bool { return len(e.logs.records("task timings")) == 2 })
		recs := e.logs.records("task timings")
		if len(recs) != 2 {
			t.Fatalf("%d task timings records, want 2", len(recs))
		}
		for _, rec := range recs {
			res, okRes := rec["resolvedMs"].(float64)
			_, okRem := rec["removedMs"].(float64)
			total, _ := rec["totalMs"].(float64)
			if !okRes || !okRem {
				t.Errorf("timings record without resolvedMs and removedMs: %v", rec)
			}
			// The total is claim → resolution: the removal is not in it.
			if rem := rec["removedMs"].(float64); okRes && okRem && rem > 0 && total >= sumPhases(rec) {
				t.Errorf("totalMs %v includes the removal (%v ms; resolved after %v ms): %v", total, rem, res, rec)
			}
		}
	})
}

// sumPhases adds the <phase>Ms durations of a timings record.
func sumPhases(rec map[string]any) float64 {
	s := 0.0
	for k, v := range rec {
		if f, ok := v.(float64); ok && strings.HasSuffix(k, "Ms") && k != "totalMs" {
			s += f
		}
	}
	return s
}

// A stopping worker waits for the removals still pending before Run
// returns.
func TestShutdownWaitsForPendingRemoval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGatedRemove()
		e := start(t, setup{docker: g.wrap})
		id := e.createTask(payload(600, "true"))
		e.waitRun(id, 0)
		e.w.Stop(worker.StopGraceful)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		select {
		case err := <-e.done:
			e.done <- err
			t.Fatal("Run returned while a container removal was pending")
		default:
		}
		if g.pending() != 1 {
			t.Fatalf("%d removals pending, want 1", g.pending())
		}
		close(g.open)
		e.shutdown()
		if cs := e.docker.Containers(); len(cs) != 1 || !cs[0].Removed {
			t.Errorf("containers after the shutdown: %+v", cs)
		}
	})
}

// A removal that never returns does not hold the shutdown for ever: it is
// given up after its bound and logged; the container keeps the worker's
// labels for the next start's recovery.
func TestShutdownBoundsAStuckRemoval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGatedRemove()
		e := start(t, setup{docker: g.wrap})
		id := e.createTask(payload(600, "true"))
		e.waitRun(id, 0)
		e.w.Stop(worker.StopGraceful)
		e.waitStopped()
		if n := e.logs.count("container removal error"); n != 1 {
			t.Errorf("%d 'container removal error' records, want 1", n)
		}
		cs := e.docker.Containers()
		if len(cs) != 1 || cs[0].Removed || cs[0].Spec.Labels["dev.dockerworker.worker-id"] != e.cfg.WorkerID {
			t.Fatalf("containers after the shutdown: %+v", cs)
		}
		e.docker.Remove(t.Context(), cs[0].ID) // what the next start would do
	})
}

// A worker killed after resolving a run but before removing its container
// leaves the container and a journal entry with the resolution; the next
// start removes the container, and the run stays resolved as it was.
func TestKilledBetweenResolutionAndRemoval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stateDir := t.TempDir()
		var taskID, leftover string
		e := start(t, setup{
			stateDir: stateDir,
			beforeRun: func(t *testing.T, admin *tc.Client, fake *dockerfake.Fake, cfg *config.Config) {
				pre := &env{t: t, admin: admin, cfg: cfg}
				taskID = pre.createTask(payload(600, "true"))
				resp, err := admin.ClaimWork(t.Context(), cfg.ProvisionerID+"/"+cfg.WorkerType, tc.ClaimWorkRequest{
					Tasks: 1, WorkerGroup: cfg.WorkerGroup, WorkerID: cfg.WorkerID})
				if err != nil || len(resp.Tasks) != 1 {
					t.Fatalf("claim: %v", err)
				}
				c := resp.Tasks[0]
				j, err := journal.Open(stateDir)
				if err != nil {
					t.Fatal(err)
				}
				en, err := j.Begin(journal.Claim{TaskID: taskID, RunID: c.RunID, WorkerGroup: cfg.WorkerGroup,
					WorkerID: cfg.WorkerID, Credentials: c.Credentials, TakenUntil: c.TakenUntil, Expires: c.Task.Expires})
				if err != nil {
					t.Fatal(err)
				}
				en.Write([]byte("the whole task log\n"))
				en.Resolving(tc.StateCompleted)
				if _, err := admin.WithCredentials(c.Credentials).ReportCompleted(t.Context(), taskID, c.RunID); err != nil {
					t.Fatal(err)
				}
				leftover, err = fake.Create(t.Context(), docker.ContainerSpec{Image: testImage, Labels: map[string]string{
					"dev.dockerworker.worker-id": cfg.WorkerID, "dev.dockerworker.state-id": j.ID(),
					"dev.dockerworker.task-id": taskID, "dev.dockerworker.run-id": "0"}})
				if err != nil {
					t.Fatal(err)
				}
				if err := fake.Start(t.Context(), leftover); err != nil {
					t.Fatal(err)
				}
				if _, err := fake.Wait(t.Context(), leftover); err != nil {
					t.Fatal(err)
				}
				j.Close() // the process dies here
			},
		})
		e.waitFor("the recovery", time.Second, func() bool { return e.logs.count("recovered what a previous process left") == 1 })
		if !slices.ContainsFunc(e.docker.Removes(), func(c dockerfake.Call) bool { return c.ID == leftover }) {
			t.Error("the container left between resolution and removal was not removed")
		}
		st := e.status(taskID)
		if len(st.Runs) != 1 || st.Runs[0].State != tc.StateCompleted {
			t.Errorf("task runs after the recovery: %+v, want one completed run", st.Runs)
		}
		// The queue takes the same resolution again (or answers 409): either
		// way the run stays as it was resolved.
		if n := e.logs.count("recovery: run already resolved") + e.logs.count("recovery: resolved a run of a previous process"); n != 1 {
			t.Errorf("%d records of the journalled resolution, want 1", n)
		}
		if ents, _ := os.ReadDir(filepath.Join(stateDir, "runs")); len(ents) != 0 {
			t.Errorf("journal entries left: %v", ents)
		}
	})
}

// records returns the records with msg, decoded.
func (l *logBuffer) records(msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(l.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// failingRemove fails the first n container removals.
type failingRemove struct {
	*dockerfake.Fake
	mu       sync.Mutex
	n, calls int
}

func (f *failingRemove) wrap(fake *dockerfake.Fake) worker.Docker {
	f.Fake = fake
	return f
}

func (f *failingRemove) Remove(ctx context.Context, id string) error {
	f.mu.Lock()
	f.calls++
	fail := f.calls <= f.n
	f.mu.Unlock()
	if fail {
		return fmt.Errorf("remove container %s: device or resource busy", id)
	}
	return f.Fake.Remove(ctx, id)
}

// A removal that fails is tried again; one that keeps failing is given up
// and logged, leaving the container (with the worker's labels) to the
// recovery and the collectors.
func TestFailedRemovalIsRetried(t *testing.T) {
	for _, tt := range []struct {
		name      string
		failures  int
		wantCalls int
		removed   bool
	}{
		{"once", 1, 2, true},
		{"always", 100, 3, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &failingRemove{n: tt.failures}
				e := start(t, setup{docker: f.wrap})
				id := e.createTask(payload(600, "true"))
				if r := e.waitRun(id, 0).Runs[0]; r.State != tc.StateCompleted {
					t.Fatalf("task: %s/%s, want completed", r.State, r.ReasonResolved)
				}
				e.waitIdle(1)
				e.shutdown()
				f.mu.Lock()
				calls := f.calls
				f.mu.Unlock()
				cs := e.docker.Containers()
				if calls != tt.wantCalls || len(cs) != 1 || cs[0].Removed != tt.removed {
					t.Errorf("%d removal calls, container removed %v; want %d, %v", calls, len(cs) == 1 && cs[0].Removed, tt.wantCalls, tt.removed)
				}
				wantErrs := 0
				if !tt.removed {
					wantErrs = 1
				}
				if n := e.logs.count("container removal error"); n != wantErrs {
					t.Errorf("%d 'container removal error' records, want %d", n, wantErrs)
				}
				if !tt.removed {
					e.docker.Remove(t.Context(), cs[0].ID)
				}
			})
		})
	}
}
