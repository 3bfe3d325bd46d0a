package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/journal"
	"go.dockerworker.dev/docker-worker/worker/tasklog"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// Labels the runner puts on every task container.
const (
	labelTaskID   = "dev.dockerworker.task-id"
	labelRunID    = "dev.dockerworker.run-id"
	labelWorkerID = "dev.dockerworker.worker-id"
	// labelStateID is the identity of the worker's state directory (see
	// journal.Journal.ID), when it has one.
	labelStateID = "dev.dockerworker.state-id"
)

// recoverTimeout bounds the whole recovery at start-up; recoverParallel is
// how many leftover runs are finished at once.
const (
	recoverTimeout  = 5 * time.Minute
	recoverParallel = 8
)

// recovery counts what recoverLeftovers did, for its log line.
type recovery struct {
	mu                sync.Mutex
	containers        int
	resolved, expired int
	failed            int
}

func (c *recovery) add(f func(*recovery)) {
	c.mu.Lock()
	f(c)
	c.mu.Unlock()
}

// recoverLeftovers finishes what a previous process of this worker left,
// before anything is claimed: every container labelled with the worker's
// id is killed and removed; every journalled run whose claim is still
// valid gets its task log uploaded (by the features that implement
// features.Recoverer) and is resolved exception/worker-shutdown (or as
// the process was about to resolve it) so that the queue retries it at
// once; runs whose claim expired are dropped, the queue having resolved
// them. Failures are logged; they never stop the worker.
func (w *Worker) recoverLeftovers(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, recoverTimeout)
	defer cancel()
	start := w.now()
	var st recovery

	cs, err := w.opts.Docker.ListContainers(ctx, w.ownLabels())
	if err != nil {
		w.log.Error("recovery: list containers", "error", err)
	}
	each(cs, recoverParallel, func(c docker.ContainerState) {
		// Remove kills a running container first.
		if err := w.opts.Docker.Remove(ctx, c.ID); err != nil {
			w.log.Error("recovery: remove container", "container", c.ID, "error", err)
			return
		}
		w.log.Info("recovery: removed container of a previous process", "container", c.ID,
			"taskId", c.Labels[labelTaskID], "runId", c.Labels[labelRunID], "state", c.State)
		st.add(func(s *recovery) { s.containers++ })
	})

	var left []journal.Leftover
	if j := w.opts.Journal; j != nil {
		if left, err = j.Leftovers(); err != nil {
			w.log.Error("recovery: read the journal", "error", err)
		}
	}
	each(left, recoverParallel, func(l journal.Leftover) {
		switch err := w.recoverRun(ctx, l); {
		case errors.Is(err, errClaimExpired):
			st.add(func(s *recovery) { s.expired++ })
		case err != nil:
			w.log.Error("recovery: could not finish a run of a previous process", "taskId", l.TaskID, "runId", l.RunID, "error", err)
			st.add(func(s *recovery) { s.failed++ })
		default:
			st.add(func(s *recovery) { s.resolved++ })
		}
		if err := l.Remove(); err != nil {
			w.log.Error("recovery: remove journal entry", "taskId", l.TaskID, "error", err)
		}
	})
	if st.containers+len(left) == 0 {
		return
	}
	took := w.now().Sub(start)
	w.log.Info("recovered what a previous process left", "containersRemoved", st.containers,
		"runsResolved", st.resolved, "runsExpired", st.expired, "runsFailed", st.failed,
		"ms", took.Milliseconds())
	w.hooks.emitWorker(features.WorkerEvent{Kind: features.Recovered, At: w.now(), Recovery: features.Recovery{
		ContainersRemoved: st.containers, RunsResolved: st.resolved, RunsExpired: st.expired,
		RunsFailed: st.failed, Took: took}})
}

// ownLabels are the labels of every container this worker (and a previous
// process using the same state directory) creates.
func (w *Worker) ownLabels() map[string]string {
	l := map[string]string{labelWorkerID: w.cfg.WorkerID}
	if j := w.opts.Journal; j != nil {
		l[labelStateID] = j.ID()
	}
	return l
}

// errClaimExpired: the leftover run's claim expired; the queue resolved it.
var errClaimExpired = errors.New("claim expired")

// recoverRun finishes one leftover run.
func (w *Worker) recoverRun(ctx context.Context, l journal.Leftover) error {
	if l.Err != nil {
		return l.Err
	}
	if l.WorkerID != w.cfg.WorkerID || l.WorkerGroup != w.cfg.WorkerGroup {
		return fmt.Errorf("journal entry belongs to worker %s/%s", l.WorkerGroup, l.WorkerID)
	}
	if !w.now().Before(l.TakenUntil) {
		w.log.Info("recovery: claim of a previous process expired", "taskId", l.TaskID, "runId", l.RunID, "takenUntil", l.TakenUntil)
		return errClaimExpired
	}
	ctx = tc.RetryUntil(ctx, l.TakenUntil)
	r := &run{w: w, taskID: l.TaskID, runID: l.RunID, creds: l.Credentials, takenUntil: l.TakenUntil,
		logger: w.log.With("taskId", l.TaskID, "runId", l.RunID)}
	q := r.queue()

	state, reason := tc.StateException, tc.ReasonWorkerShutdown
	if l.Resolution != "" {
		// The process died while reporting: the artifacts are up; report
		// what it was reporting.
		state, reason, _ = strings.Cut(l.Resolution, "/")
	} else {
		tail := tasklog.ErrorLine("The worker process ended while the task ran; its container was removed. " +
			"Task has been aborted prematurely. Reason: " + tc.ReasonWorkerShutdown)
		run := features.RecoveredRun{
			TaskID:     l.TaskID,
			RunID:      l.RunID,
			PayloadLog: l.LogName,
			Expires:    l.Expires,
			OpenLog: func(context.Context) (io.ReadCloser, error) {
				f, err := os.Open(l.LogPath())
				if err != nil {
					return nil, err
				}
				return readCloser{io.MultiReader(f, strings.NewReader(tail)), f}, nil
			},
			Artifacts: publisher{r},
		}
		var errs []error
		for _, f := range w.opts.Features {
			if rf, ok := f.(features.Recoverer); ok {
				if err := rf.Recover(ctx, run); err != nil {
					errs = append(errs, fmt.Errorf("feature %s: %w", f.Name(), err))
				}
			}
		}
		if err := errors.Join(errs...); err != nil {
			w.log.Warn("recovery: uploading the task log", "taskId", l.TaskID, "runId", l.RunID, "error", err)
		}
	}
	err := report(ctx, q, l.TaskID, l.RunID, state, reason)
	full := state
	if reason != "" {
		full += "/" + reason
	}
	switch {
	case tc.IsConflict(err):
		w.log.Info("recovery: run already resolved", "taskId", l.TaskID, "runId", l.RunID, "error", err)
	case err != nil:
		return fmt.Errorf("resolve %s: %w", full, err)
	default:
		w.log.Info("recovery: resolved a run of a previous process", "taskId", l.TaskID, "runId", l.RunID, "taskState", full)
	}
	return nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// each calls fn for every item, at most n at once, and waits for them.
func each[T any](items []T, n int, fn func(T)) {
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for _, it := range items {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			fn(it)
		})
	}
	wg.Wait()
}
