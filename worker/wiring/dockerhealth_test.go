package wiring

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/docker"
)

// flakyDaemon answers pings as told and keeps a list of containers.
type flakyDaemon struct {
	pingErr    error
	containers []docker.ContainerState
	removed    []string
}

func (d *flakyDaemon) Ping(context.Context) error { return d.pingErr }

func (d *flakyDaemon) ListContainers(_ context.Context, labels map[string]string) ([]docker.ContainerState, error) {
	var out []docker.ContainerState
next:
	for _, c := range d.containers {
		for k, v := range labels {
			if c.Labels[k] != v {
				continue next
			}
		}
		out = append(out, c)
	}
	return out, nil
}

func (d *flakyDaemon) Remove(_ context.Context, id string) error {
	d.removed = append(d.removed, id)
	return nil
}

type heldRuns []features.RunRef

func (h heldRuns) Cancel(string, int, error) bool { return false }
func (h heldRuns) List() []features.RunRef        { return h }

func taskContainer(id, worker, task, run, state string) docker.ContainerState {
	return docker.ContainerState{ID: id, State: state, Labels: map[string]string{
		"dev.dockerworker.worker-id": worker, "dev.dockerworker.state-id": "s1",
		"dev.dockerworker.task-id": task, "dev.dockerworker.run-id": run}}
}

// Once the daemon answers again, the worker's containers of runs it no
// longer holds are removed, running or not; those of runs in progress, of
// other workers (or another state directory) and side containers stay.
func TestDockerHealthSweepsAfterAnOutage(t *testing.T) {
	cfg := config.Default()
	cfg.WorkerID = "w1"
	d := &flakyDaemon{containers: []docker.ContainerState{
		taskContainer("cut-off", "w1", "T1", "0", "exited"),
		taskContainer("kept-running", "w1", "T2", "0", "running"),
		taskContainer("held", "w1", "T3", "1", "running"),
		taskContainer("other-worker", "w2", "T4", "0", "exited"),
		taskContainer("other-state-dir", "w1", "T5", "0", "exited"),
		{ID: "dind-side", State: "running", Labels: map[string]string{"dev.dockerworker.worker-id": "w1", "dev.dockerworker.state-id": "s1"}},
	}}
	d.containers[4].Labels["dev.dockerworker.state-id"] = "s2"
	e := newDockerHealthExtension(cfg, "s1", d, slog.New(slog.DiscardHandler))
	e.runs = heldRuns{{TaskID: "T3", RunID: 1}}
	ctx := t.Context()

	if n, _ := e.checker.Allow(ctx, 1); n != 1 || len(d.removed) != 0 {
		t.Fatalf("daemon up: allowed %d, removed %v; want 1 and nothing", n, d.removed)
	}
	d.pingErr = errors.New("connection refused")
	if n, _ := e.checker.Allow(ctx, 1); n != 0 {
		t.Fatalf("daemon down: allowed %d, want 0", n)
	}
	d.pingErr = nil
	if n, _ := e.checker.Allow(ctx, 1); n != 1 {
		t.Fatalf("daemon back: allowed %d, want 1", n)
	}
	slices.Sort(d.removed)
	if want := []string{"cut-off", "kept-running"}; !slices.Equal(d.removed, want) {
		t.Errorf("removed %v, want %v", d.removed, want)
	}
}
