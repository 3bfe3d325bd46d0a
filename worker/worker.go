package worker

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/schemas"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/taskerr"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// maxClaim is the most tasks one claimWork call may ask for.
const maxClaim = 32

// Options are a Worker's dependencies, wired in cmd/.
type Options struct {
	Config *config.Config
	// Queue claims work with the worker's credentials.
	Queue Queue
	// RunQueue returns a queue client using a run's temporary credentials.
	RunQueue  func(tc.Credentials) RunQueue
	Docker    Docker
	Validator *schemas.Validator
	// Features in the order their phases run.
	Features []features.Feature
	Logger   *slog.Logger
	// Version is printed in the task log header.
	Version string
	// Hostname is printed in the task log header.
	Hostname string
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Worker claims tasks and runs them.
type Worker struct {
	opts Options
	cfg  *config.Config
	log  *slog.Logger
	now  func() time.Time

	// abortCtx is the parent of every task context; Abort cancels it.
	abortCtx context.Context
	abort    context.CancelCauseFunc

	mu      sync.Mutex
	running int
	freed   chan struct{} // signalled (non-blocking) when a task finishes
	tasks   sync.WaitGroup
}

// errWorkerShutdown is the cause of task aborts on an immediate shutdown.
var errWorkerShutdown = errors.New("worker-shutdown")

// New returns a worker; it does nothing until Run.
func New(opts Options) *Worker {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	return &Worker{
		opts:     opts,
		cfg:      opts.Config,
		log:      opts.Logger,
		now:      opts.Now,
		abortCtx: ctx,
		abort:    cancel,
		freed:    make(chan struct{}, 1),
	}
}

// Abort stops every running task now: each is resolved
// exception/worker-shutdown after its log is uploaded. Run then returns once
// they are resolved. It is safe to call more than once.
func (w *Worker) Abort() {
	w.abort(taskerr.WorkerShutdown(errWorkerShutdown))
}

// Running returns the number of tasks in progress.
func (w *Worker) Running() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.running
}

// freeSlots is how many more tasks may be claimed now.
func (w *Worker) freeSlots() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return max(w.cfg.Capacity-w.running, 0)
}

// Run claims and runs tasks until ctx is cancelled (a graceful stop: no new
// claims, running tasks finish) and then waits for running tasks. Errors from
// the queue are logged and retried with backoff; Run never fails because of
// them.
func (w *Worker) Run(ctx context.Context) error {
	taskQueueID := w.cfg.ProvisionerID + "/" + w.cfg.WorkerType
	w.log.Info("start", "taskQueueId", taskQueueID, "workerGroup", w.cfg.WorkerGroup,
		"workerId", w.cfg.WorkerID, "capacity", w.cfg.Capacity)
	failures := 0
	for ctx.Err() == nil && w.abortCtx.Err() == nil {
		free := w.freeSlots()
		if free == 0 {
			select {
			case <-w.freed:
			case <-ctx.Done():
			case <-w.abortCtx.Done():
			}
			continue
		}
		resp, err := w.opts.Queue.ClaimWork(ctx, taskQueueID, tc.ClaimWorkRequest{
			Tasks:       min(free, maxClaim),
			WorkerGroup: w.cfg.WorkerGroup,
			WorkerID:    w.cfg.WorkerID,
		})
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			failures++
			d := claimBackoff(failures, w.cfg.PollInterval(), time.Duration(w.cfg.TaskQueue.MaxBackoff)*time.Millisecond)
			w.log.Error("[alert-operator] task retrieval error", "error", err, "retryIn", d)
			sleep(ctx, d)
			continue
		}
		failures = 0
		for _, claim := range resp.Tasks {
			w.log.Info("claimed task", "taskId", claim.Status.TaskID, "runId", claim.RunID)
			w.startTask(claim)
		}
		if len(resp.Tasks) == 0 {
			sleep(ctx, w.cfg.PollInterval())
		}
	}
	w.log.Info("stopped claiming; waiting for running tasks", "running", w.Running())
	w.tasks.Wait()
	w.log.Info("exit")
	return nil
}

func (w *Worker) startTask(claim tc.TaskClaim) {
	w.mu.Lock()
	w.running++
	w.mu.Unlock()
	w.tasks.Add(1)
	go func() {
		defer w.tasks.Done()
		defer func() {
			w.mu.Lock()
			w.running--
			w.mu.Unlock()
			select {
			case w.freed <- struct{}{}:
			default:
			}
		}()
		r := newRun(w, claim)
		r.run()
	}()
}

// claimBackoff is the pause after n consecutive claim failures: the poll
// interval doubled per failure, capped, with ±25% jitter.
func claimBackoff(n int, base, limit time.Duration) time.Duration {
	if base <= 0 {
		base = 100 * time.Millisecond
	}
	d := base
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	d = min(d, max(limit, base))
	return time.Duration(float64(d) * (0.75 + 0.5*rand.Float64()))
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// pullPolicy is the configured image pull retry policy.
func (w *Worker) pullPolicy() docker.PullPolicy {
	return docker.PullPolicy{
		Attempts:      w.cfg.DockerConfig.MaxAttempts,
		BaseDelay:     time.Duration(w.cfg.DockerConfig.DelayFactor) * time.Millisecond,
		Randomization: w.cfg.DockerConfig.RandomizationFactor,
	}
}
