package wiring

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/diskgc"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/dockerhealth"
)

// orphanSweepTimeout bounds the removal of what a Docker fault left.
const orphanSweepTimeout = 30 * time.Second

// healthDocker is what the Docker health extension needs of the client.
type healthDocker interface {
	dockerhealth.Pinger
	ListContainers(ctx context.Context, labels map[string]string) ([]docker.ContainerState, error)
	Remove(ctx context.Context, id string) error
}

// dockerHealthExtension holds the claims while the Docker daemon does not
// answer, and once it answers again removes the worker's task containers
// whose runs the worker no longer holds: a run cut off by the fault could
// not remove its container, and one the daemon kept running (live
// restore) must not go on beside the task's next run.
type dockerHealthExtension struct {
	checker *dockerhealth.Checker
	docker  healthDocker
	labels  map[string]string
	logger  *slog.Logger
	runs    features.Runs
}

var _ features.Extension = (*dockerHealthExtension)(nil)

// stateID is the worker's state directory identity, which its containers
// carry besides its worker id ("" when it has none).
func newDockerHealthExtension(cfg *config.Config, stateID string, d healthDocker, logger *slog.Logger) *dockerHealthExtension {
	labels := map[string]string{diskgc.WorkerLabel: cfg.WorkerID}
	if stateID != "" {
		labels[diskgc.StateLabel] = stateID
	}
	e := &dockerHealthExtension{docker: d, labels: labels, logger: logger.With("component", "dockerhealth")}
	e.checker = dockerhealth.New(dockerhealth.Config{Logger: e.logger, Recovered: e.sweep}, d)
	return e
}

func (e *dockerHealthExtension) Init(_ context.Context, h features.Host) error {
	e.runs = h.Runs()
	h.BeforeClaim(e.checker.Allow)
	return nil
}

// sweep removes the worker's containers of runs it does not hold.
func (e *dockerHealthExtension) sweep(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, orphanSweepTimeout)
	defer cancel()
	cs, err := e.docker.ListContainers(ctx, e.labels)
	if err != nil {
		e.logger.Warn("could not list the task containers after the Docker fault", "error", err)
		return
	}
	held := map[string]bool{}
	for _, r := range e.runs.List() {
		held[r.TaskID+"/"+strconv.Itoa(r.RunID)] = true
	}
	for _, c := range cs {
		// Only task containers: a side container (dind) goes with its run.
		if c.Labels[diskgc.TaskLabel] == "" || held[c.Labels[diskgc.TaskLabel]+"/"+c.Labels[diskgc.RunLabel]] {
			continue
		}
		if err := e.docker.Remove(ctx, c.ID); err != nil {
			e.logger.Warn("container removal error", "container", c.ID, "error", err)
			continue
		}
		e.logger.Info("removed a task container left by the Docker fault", "container", c.ID,
			"taskId", c.Labels[diskgc.TaskLabel], "runId", c.Labels[diskgc.RunLabel], "state", c.State)
	}
}
