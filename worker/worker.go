package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/schemas"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/internal/backoff"
	"go.dockerworker.dev/docker-worker/worker/journal"
	"go.dockerworker.dev/docker-worker/worker/taskerr"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// maxClaim is the most tasks one claimWork call may ask for.
const maxClaim = 32

// Options are a Worker's dependencies, wired in cmd/.
type Options struct {
	Config *config.Config
	// Queue claims work with the worker's own credentials.
	Queue Queue
	// StatusQueue, when set, is asked for a task's status when Queue is
	// refused (403): a client without credentials, answering with the
	// deployment's anonymous scopes.
	StatusQueue StatusQueue
	// RunQueue returns a queue client using a run's temporary credentials.
	RunQueue  func(tc.Credentials) RunQueue
	Docker    Docker
	Validator *schemas.Validator
	// Features in the order their phases run.
	Features []features.Feature
	// Extensions are worker services that are not features but take part
	// in the worker's life (Init is called after the features').
	Extensions []features.Extension
	Logger     *slog.Logger
	// Version is printed in the task log header.
	Version string
	// Hostname is printed in the task log header.
	Hostname string
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Journal, when set, records every run the worker holds so that the
	// next process can finish them if this one dies; Run finishes the
	// runs a previous process left before it claims anything.
	Journal *journal.Journal
}

// StopMode is how a worker stops.
type StopMode int

const (
	// StopGraceful stops claiming and lets running tasks finish.
	StopGraceful StopMode = iota + 1
	// StopImmediate also aborts running tasks: each is resolved
	// exception/worker-shutdown after its log is uploaded.
	StopImmediate
)

func (m StopMode) String() string {
	switch m {
	case StopGraceful:
		return "graceful"
	case StopImmediate:
		return "immediate"
	}
	return fmt.Sprintf("StopMode(%d)", int(m))
}

// Worker claims tasks and runs them.
type Worker struct {
	opts   Options
	cfg    *config.Config
	log    *slog.Logger
	now    func() time.Time
	check  *PayloadCheck
	hooks  hooks
	runs   *registry
	status *statusPoller

	// abortCtx is the parent of every task context; an immediate stop
	// cancels it.
	abortCtx context.Context
	abort    context.CancelCauseFunc
	// graceful is closed by a graceful (or immediate) stop.
	graceful     chan struct{}
	gracefulOnce sync.Once

	// initDone is set once the observers are registered (Emit reads
	// them without a lock afterwards).
	initDone atomic.Bool

	mu      sync.Mutex
	running int
	freed   chan struct{} // signalled (non-blocking) when a task finishes
	tasks   sync.WaitGroup
}

// ErrCredentialsRejected is returned (wrapped) by [Worker.Run] when the
// queue refused the worker's own credentials (401 or 403 from claimWork)
// credentialRejections times in a row: retrying cannot help, an operator
// must fix the credentials or their scopes.
var ErrCredentialsRejected = errors.New("the queue rejects the worker's credentials")

// credentialRejections is how many claimWork answers in a row must be 401
// or 403 before the worker stops. One is not enough: a clock jump or a
// credential rotation in progress may cause a single refusal.
const credentialRejections = 3

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
	w := &Worker{
		opts:     opts,
		cfg:      opts.Config,
		log:      opts.Logger,
		now:      opts.Now,
		check:    NewPayloadCheck(opts.Config, opts.Features),
		runs:     newRegistry(),
		abortCtx: ctx,
		abort:    cancel,
		graceful: make(chan struct{}),
		freed:    make(chan struct{}, 1),
	}
	w.status = newStatusPoller(opts.Queue, opts.StatusQueue, w.log)
	return w
}

// Stop stops the worker: see [StopMode]. It is safe to call more than once
// and from any goroutine; an immediate stop after a graceful one aborts the
// tasks still running.
func (w *Worker) Stop(mode StopMode) {
	w.gracefulOnce.Do(func() { close(w.graceful) })
	if mode == StopImmediate {
		w.abort(taskerr.WorkerShutdown(errWorkerShutdown))
	}
}

// Runs is the registry of runs in progress.
func (w *Worker) Runs() features.Runs { return w.runs }

// Emit tells the observers that want them (see features.WorkerObserver)
// about a worker event seen by a service wired beside the worker: a queue
// call that failed, a spot interruption notice. Events before Run has
// initialised the extensions reach no one. It must not be called with a
// kind the worker emits itself.
func (w *Worker) Emit(ev features.WorkerEvent) {
	if !w.initDone.Load() {
		return
	}
	if ev.At.IsZero() {
		ev.At = w.now()
	}
	w.hooks.emitWorker(ev)
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

// stopping reports whether the worker stopped claiming.
func (w *Worker) stopping() bool {
	select {
	case <-w.graceful:
		return true
	default:
		return false
	}
}

// Run initialises the extensions, then claims and runs tasks until the
// worker is stopped ([Worker.Stop]) and its running tasks are resolved.
// Cancelling ctx is an immediate stop. Errors from the queue are logged and
// retried with backoff. Run fails when an extension cannot start, and when
// the queue rejects the worker's credentials (claimWork answered 401 or 403
// credentialRejections times in a row): it then stops claiming, lets the
// running tasks finish and returns an error wrapping
// [ErrCredentialsRejected].
func (w *Worker) Run(ctx context.Context) error {
	stopWatch := context.AfterFunc(ctx, func() { w.Stop(StopImmediate) })
	defer stopWatch()

	if err := w.init(ctx); err != nil {
		return err
	}
	taskQueueID := w.cfg.ProvisionerID + "/" + w.cfg.WorkerType
	w.log.Info("start", "taskQueueId", taskQueueID, "workerGroup", w.cfg.WorkerGroup,
		"workerId", w.cfg.WorkerID, "capacity", w.cfg.Capacity)

	// claimCtx ends with the first stop of either kind.
	claimCtx, cancelClaims := context.WithCancel(ctx)
	defer cancelClaims()
	go func() {
		select {
		case <-w.graceful:
		case <-claimCtx.Done():
		}
		cancelClaims()
	}()

	w.hooks.emitWorker(features.WorkerEvent{Kind: features.Ready, At: w.now()})
	var limitReason string
	var runErr error
	failures, rejections := 0, 0
	for claimCtx.Err() == nil {
		free := w.freeSlots()
		if free == 0 {
			select {
			case <-w.freed:
			case <-claimCtx.Done():
			}
			continue
		}
		want := min(free, maxClaim)
		n, reason := w.hooks.allow(claimCtx, want)
		if reason != limitReason {
			if reason != "" {
				w.log.Warn("claiming fewer tasks", "allowed", n, "free", want, "reason", reason)
			} else {
				w.log.Info("claiming at full capacity again", "free", want)
			}
			limitReason = reason
		}
		if n <= 0 {
			sleep(claimCtx, w.cfg.PollInterval())
			continue
		}
		resp, err := w.opts.Queue.ClaimWork(claimCtx, taskQueueID, tc.ClaimWorkRequest{
			Tasks:       n,
			WorkerGroup: w.cfg.WorkerGroup,
			WorkerID:    w.cfg.WorkerID,
		})
		if err != nil {
			if claimCtx.Err() != nil {
				break
			}
			failures++
			w.hooks.emitWorker(features.WorkerEvent{Kind: features.ClaimFailed, At: w.now(), Err: err})
			if s := tc.StatusCode(err); s == http.StatusUnauthorized || s == http.StatusForbidden {
				rejections++
			} else {
				rejections = 0
			}
			if rejections >= credentialRejections {
				w.log.Error("[alert-operator] the queue rejects the worker's credentials: check taskcluster.clientId and accessToken (and certificate) and the client's scopes (queue:claim-work, queue:worker-id), then restart the worker; no more tasks are claimed",
					"attempts", rejections, "clientId", w.cfg.Taskcluster.ClientID, "error", err)
				runErr = fmt.Errorf("%w: claimWork was refused %d times in a row, last: %w", ErrCredentialsRejected, rejections, err)
				w.Stop(StopGraceful)
				break
			}
			d := claimBackoff(failures, w.cfg.PollInterval(), time.Duration(w.cfg.TaskQueue.MaxBackoff)*time.Millisecond)
			w.log.Error("[alert-operator] task retrieval error", "error", err, "retryIn", d)
			sleep(claimCtx, d)
			continue
		}
		failures, rejections = 0, 0
		for _, claim := range resp.Tasks {
			w.log.Info("claimed task", "taskId", claim.Status.TaskID, "runId", claim.RunID)
			w.startTask(claim)
		}
		if len(resp.Tasks) == 0 {
			sleep(claimCtx, w.cfg.PollInterval())
		}
	}
	w.log.Info("stopped claiming; waiting for running tasks", "running", w.Running())
	w.tasks.Wait()
	w.hooks.emitWorker(features.WorkerEvent{Kind: features.Stopped, At: w.now()})
	w.log.Info("exit")
	return runErr
}

// init calls every extension's Init, recovers what a previous process
// left, then calls the start hooks.
func (w *Worker) init(ctx context.Context) error {
	h := &hostView{w: w}
	var exts []features.Extension
	for _, f := range w.opts.Features {
		if e, ok := f.(features.Extension); ok {
			exts = append(exts, e)
		}
	}
	exts = append(exts, w.opts.Extensions...)
	for _, e := range exts {
		if err := e.Init(ctx, h); err != nil {
			return fmt.Errorf("start %s: %w", extensionName(e), err)
		}
	}
	h.sealed = true
	w.initDone.Store(true)
	// What a killed process left goes first, so that the start hooks (the
	// cache settling its instances, for one) see its containers gone.
	w.recoverLeftovers(ctx)
	for _, hook := range w.hooks.start {
		if err := hook(ctx); err != nil {
			return fmt.Errorf("before the first claim: %w", err)
		}
	}
	return nil
}

func extensionName(e features.Extension) string {
	if f, ok := e.(features.Feature); ok {
		return "feature " + f.Name()
	}
	return strings.TrimPrefix(fmt.Sprintf("%T", e), "*")
}

func (w *Worker) startTask(claim tc.TaskClaim) {
	w.mu.Lock()
	w.running++
	w.mu.Unlock()
	w.tasks.Add(1)
	r := newRun(w, claim)
	w.runs.add(r)
	w.hooks.claimed(w.abortCtx, features.RunRef{TaskID: r.taskID, RunID: r.runID})
	go func() {
		defer w.tasks.Done()
		defer w.release(r)
		r.run()
	}()
}

// release takes r out of the run registry and gives its slot back to the
// claim loop; only the first call counts. A run is released once it is
// resolved, before its container is removed, so that the next claim
// overlaps the end of the run; Run still waits for the removal (its
// goroutine). A container whose removal is pending or failed belongs to
// no run the registry holds, so the Docker health sweep may remove it
// too.
func (w *Worker) release(r *run) {
	w.mu.Lock()
	if r.released {
		w.mu.Unlock()
		return
	}
	r.released = true
	w.running--
	w.mu.Unlock()
	w.runs.remove(r)
	select {
	case w.freed <- struct{}{}:
	default:
	}
}

// claimBackoff is the pause after n consecutive claim failures: the poll
// interval doubled per failure, capped, with ±25% jitter.
func claimBackoff(n int, base, limit time.Duration) time.Duration {
	if base <= 0 {
		base = 100 * time.Millisecond
	}
	return backoff.Policy{Base: base, Max: max(limit, base), Jitter: 0.25}.Delay(n)
}

func sleep(ctx context.Context, d time.Duration) { backoff.Wait(ctx, d) }
