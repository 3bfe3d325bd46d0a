package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/schemas"
	"go.dockerworker.dev/docker-worker/worker/journal"
	"go.dockerworker.dev/docker-worker/worker/taskerr"
	"go.dockerworker.dev/docker-worker/worker/tasklog"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// Deadlines of the steps that run after a task is aborted, each its own so
// that one slow step cannot eat the budget of the next.
const (
	// finishTimeout bounds the Finish phase (log uploads).
	finishTimeout = 5 * time.Minute
	// cleanupTimeout bounds the Cleanup phase.
	cleanupTimeout = 2 * time.Minute
	// killTimeout bounds killing the container and waiting for it to stop.
	killTimeout = 30 * time.Second
	// removeTimeout bounds removing the container, its attempts
	// included; removeAttempts is how many times a failed removal is
	// tried, removeRetryDelay the pause before the second (growing).
	removeTimeout    = time.Minute
	removeAttempts   = 3
	removeRetryDelay = time.Second
	// createTimeout bounds creating it.
	createTimeout = 2 * time.Minute
	// resolveTimeout bounds the report of a run whose runner panicked.
	resolveTimeout = 2 * time.Minute
)

var errMaxRunTime = errors.New("maxRunTime exceeded")

// run is one claimed task run, from claim to resolution.
type run struct {
	w       *Worker
	taskID  string
	runID   int
	def     tc.TaskDefinition
	logger  *slog.Logger
	log     *tasklog.Log
	payload *schemas.Payload
	start   time.Time
	res     features.Resources

	// ctx is the task context, cancelled (with a taskerr cause) when the
	// run is aborted: queue cancellation, a failed reclaim, the deadline,
	// or an immediate worker stop.
	ctx      context.Context
	cancelFn context.CancelCauseFunc

	mu         sync.Mutex
	creds      tc.Credentials
	takenUntil time.Time

	active []activeFeature

	// containerID is the task container until it is removed.
	containerID string
	// released is set once the run gave its slot back (Worker.release);
	// guarded by the worker's mu.
	released bool

	// journal is the run's journal entry (nil without a journal).
	journal *journal.Entry

	// marks are when each phase of the run ended, for the timings record.
	marks []mark
}

// mark is the end of one phase of a run.
type mark struct {
	phase string
	at    time.Time
}

type activeFeature struct {
	name string
	tf   features.TaskFeature
}

// outcome is how the container part of a run ended.
type outcome struct {
	exitCode int   // -1 unless the container exited by itself
	exited   bool  // the container ran and exited by itself
	err      error // every error, classified once by the caller
}

func newRun(w *Worker, claim tc.TaskClaim) *run {
	ctx, cancel := context.WithCancelCause(w.abortCtx)
	return &run{
		w:          w,
		taskID:     claim.Status.TaskID,
		runID:      claim.RunID,
		def:        claim.Task,
		logger:     w.log.With("taskId", claim.Status.TaskID, "runId", claim.RunID),
		log:        tasklog.New(w.now),
		creds:      claim.Credentials,
		takenUntil: claim.TakenUntil,
		start:      w.now(),
		ctx:        ctx,
		cancelFn:   cancel,
	}
}

func (r *run) ref() features.RunRef { return features.RunRef{TaskID: r.taskID, RunID: r.runID} }

// cancel aborts the run; cause should carry its resolution (taskerr).
func (r *run) cancel(cause error) { r.cancelFn(cause) }

// queue is a client with the run's current credentials.
func (r *run) queue() RunQueue {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.w.opts.RunQueue(r.creds)
}

// mark records that phase ended now and tells the observers.
func (r *run) mark(phase string) {
	now := r.note(phase)
	r.w.hooks.emit(features.Event{Kind: features.PhaseReached, Run: r.ref(), At: now, Phase: phase})
}

// note records that phase ended now, for the timings record only: the
// container's removal (phaseRemoved), after the resolution, is not a run
// phase the observers know.
func (r *run) note(phase string) time.Time {
	now := r.w.now()
	r.mu.Lock()
	r.marks = append(r.marks, mark{phase, now})
	r.mu.Unlock()
	return now
}

// timings returns slog attributes with each phase's duration in
// milliseconds (since the previous mark; the first since the claim), in
// order, and the total: claim → resolution (the container's removal,
// which comes after, is not part of it).
func (r *run) timings() []any {
	r.mu.Lock()
	defer r.mu.Unlock()
	attrs := make([]any, 0, 2*len(r.marks)+2)
	prev, end := r.start, r.start
	for _, m := range r.marks {
		attrs = append(attrs, m.phase+"Ms", m.at.Sub(prev).Seconds()*1000)
		prev = m.at
		if m.phase != phaseRemoved {
			end = m.at
		}
	}
	return append(attrs, "totalMs", end.Sub(r.start).Seconds()*1000)
}

// run takes the run from claim to resolution. A panic anywhere in it is
// reported as an internal error of this run; the worker goes on.
func (r *run) run() {
	defer r.cancelFn(nil)
	defer func() {
		if p := recover(); p != nil {
			r.logger.Error("task runner panicked", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), resolveTimeout)
			defer cancel()
			if _, err := r.queue().ReportException(ctx, r.taskID, r.runID, tc.ReasonInternalError); err != nil {
				r.logger.Error("could not resolve task", "taskState", "exception/internal-error", "error", err)
			}
		}
	}()
	// A run cut short by a panic still removes its container (deferred
	// calls run in reverse: this one before the panic's report). Once
	// removed, the id is cleared, so this is a no-op on the normal path.
	defer r.removeContainer(context.WithoutCancel(r.ctx))
	ctx := r.ctx
	r.beginJournal()
	defer r.endJournal()
	r.w.hooks.emit(features.Event{Kind: features.Claimed, Run: r.ref(), At: r.start, TaskCreated: r.def.Created})
	r.logger.Info("run task")

	stopWatchers := make(chan struct{})
	var watchers sync.WaitGroup
	watchers.Go(func() { r.reclaimLoop(ctx, stopWatchers) })
	if d := r.w.cfg.StatusPollInterval(); d > 0 {
		watchers.Go(func() { r.watchStatus(ctx, stopWatchers, d) })
	}

	out := r.execute(ctx)
	if cause := context.Cause(ctx); ctx.Err() != nil && cause != nil {
		out.err = errors.Join(out.err, cause)
	}
	kind := taskerr.Classify(out.err)
	success := out.err == nil && out.exited && out.exitCode == 0

	switch kind {
	case taskerr.WorkerShutdownKind, taskerr.InternalErrorKind, taskerr.ResourceUnavailableKind:
		r.log.Errorf("Task has been aborted prematurely. Reason: %s", kind.Reason())
	case taskerr.CanceledKind:
		r.log.Errorf("Task was canceled by the queue. %v", out.err)
	}
	r.footer(success, out.exitCode)
	// The log is complete: seal it before anything uploads it.
	r.log.Close()

	// The logs are uploaded whatever the end, a cancelled run's too (the
	// queue accepts artifacts of a run resolved exception for a while).
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	req := &features.FinishRequest{Success: success, Aborted: !out.exited}
	err := r.eachPhase("finish", false, func(f activeFeature) error {
		if p, ok := f.tf.(features.Finisher); ok {
			return p.Finish(fctx, req)
		}
		return nil
	})
	cancel()
	switch {
	case err != nil && kind == taskerr.CanceledKind:
		// The run is resolved already; nothing to change in its report.
		r.logger.Warn("uploading the logs of a cancelled task", "error", err)
	case err != nil:
		r.logger.Error("finishing task", "error", err)
		out.err = errors.Join(out.err, err)
		success = false
		kind = taskerr.Classify(out.err)
	}
	r.mark(features.PhaseLogUploaded)

	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	r.cleanup(cctx)
	cancel()

	close(stopWatchers)
	watchers.Wait()
	// The report bounds its own retries by the claim (see resolve).
	r.resolve(context.WithoutCancel(ctx), out, kind, success)

	// The run is resolved: its slot takes the next task while the
	// stopped container is removed.
	r.w.release(r)
	r.removeContainer(context.WithoutCancel(ctx))
	r.logger.Info("task timings", r.timings()...)
}

// callPhase runs one feature's phase, turning a panic into an internal
// error of the run.
func (r *run) callPhase(phase string, f activeFeature, fn func(activeFeature) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			r.logger.Error("feature panicked", "feature", f.name, "phase", phase, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = taskerr.InternalError(fmt.Errorf("%s panicked in %s: %v", f.name, phase, p))
		}
	}()
	return fn(f)
}

// eachPhase calls fn for every active feature in order. With stopEarly it
// stops at the first error; otherwise it calls every feature and joins the
// errors.
func (r *run) eachPhase(phase string, stopEarly bool, fn func(activeFeature) error) error {
	var errs []error
	for _, f := range r.active {
		if err := r.callPhase(phase, f, fn); err != nil {
			errs = append(errs, fmt.Errorf("feature %s: %w", f.name, err))
			if stopEarly {
				break
			}
		}
	}
	return errors.Join(errs...)
}

// cleanup calls every feature's Cleanup in reverse order.
func (r *run) cleanup(ctx context.Context) {
	for _, f := range slices.Backward(r.active) {
		err := r.callPhase("cleanup", f, func(f activeFeature) error {
			if c, ok := f.tf.(features.Cleaner); ok {
				return c.Cleanup(ctx)
			}
			return nil
		})
		if err != nil {
			r.logger.Warn("feature cleanup failed", "feature", f.name, "error", err)
		}
	}
}

// beginJournal records the claim in the worker's journal and keeps a copy
// of the task log there. A run the journal cannot record still runs: it
// just cannot be recovered should the process die.
func (r *run) beginJournal() {
	j := r.w.opts.Journal
	if j == nil {
		return
	}
	r.mu.Lock()
	c := journal.Claim{
		TaskID:      r.taskID,
		RunID:       r.runID,
		WorkerGroup: r.w.cfg.WorkerGroup,
		WorkerID:    r.w.cfg.WorkerID,
		Credentials: r.creds,
		TakenUntil:  r.takenUntil,
		Expires:     r.def.Expires,
		LogName:     payloadLog(r.def.Payload),
	}
	r.mu.Unlock()
	e, err := j.Begin(c)
	if err != nil {
		r.logger.Error("[alert-operator] cannot journal the run; it cannot be recovered after a crash", "error", err)
		return
	}
	r.journal = e
	r.log.AddSink(e)
}

// journalReclaimed records new credentials in the journal.
func (r *run) journalReclaimed(creds tc.Credentials, takenUntil time.Time) {
	if r.journal == nil {
		return
	}
	if err := r.journal.Reclaimed(creds, takenUntil); err != nil {
		r.logger.Warn("journal the reclaim", "error", err)
	}
}

// journalResolving records the resolution about to be reported.
func (r *run) journalResolving(resolution string) {
	if r.journal == nil {
		return
	}
	if err := r.journal.Resolving(resolution); err != nil {
		r.logger.Warn("journal the resolution", "error", err)
	}
}

// endJournal deletes the run's journal entry.
func (r *run) endJournal() {
	if r.journal == nil {
		return
	}
	if err := r.journal.Done(); err != nil {
		r.logger.Warn("remove the journal entry", "error", err)
	}
}

// payloadLog reads payload.log leniently (the payload is not validated
// yet).
func payloadLog(payload json.RawMessage) string {
	var p struct {
		Log any `json:"log"`
	}
	if json.Unmarshal(payload, &p) == nil {
		if s, ok := p.Log.(string); ok {
			return s
		}
	}
	return ""
}

func (r *run) header() {
	cfg := r.w.cfg
	for _, line := range []string{
		"Task ID: " + r.taskID,
		"Worker ID: " + cfg.WorkerID,
		"Worker Group: " + cfg.WorkerGroup,
		"Worker Node Type: " + cfg.WorkerNodeType,
		"Worker Pool: " + cfg.ProvisionerID + "/" + cfg.WorkerType,
		"Worker Version: " + r.w.opts.Version,
		"Public IP: " + cfg.PublicIP,
		"Hostname: " + r.w.opts.Hostname,
	} {
		r.log.Infof("%s", line)
	}
	io.WriteString(r.log, "\r\n")
}

func (r *run) footer(success bool, exitCode int) {
	secs := r.w.now().Sub(r.start).Seconds()
	word := "Successful"
	if !success {
		word = "Unsuccessful"
	}
	r.log.Infof("%s", r.timingsLine())
	r.log.Infof("%s task run with exit code: %d completed in %s seconds", word, exitCode,
		strconv.FormatFloat(secs, 'f', 3, 64))
}
