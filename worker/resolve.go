package worker

import (
	"context"
	"errors"
	"slices"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/worker/taskerr"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// resolve reports how the run ended to the queue (nothing for a cancelled
// run: the queue resolved it) and emits the Resolved event.
//
// The report is one resolution, decided once and never changed: it is
// retried within the claim's window (see claimWindow) but never replaced
// by another. A 409 answer, or a failure once the window is over,
// is checked against the task's status: when the run already holds exactly
// this resolution (an earlier attempt was applied but its answer lost) the
// report succeeded; after a 409 otherwise, the queue resolved the run
// first.
//
// ctx should carry no deadline of its own: the report bounds its retries
// by the claim (see claimWindow), and the tc client bounds each attempt.
func (r *run) resolve(ctx context.Context, out outcome, kind taskerr.Kind, success bool) {
	var state, reason string
	switch {
	case kind == taskerr.CanceledKind:
		if errors.Is(out.err, errClaimLost) {
			r.logger.Info("task resolved by the queue (claim expired)", "taskState", "canceled")
		} else {
			r.logger.Info("task resolved", "taskState", "canceled")
		}
		r.w.hooks.emit(features.Event{Kind: features.Resolved, Run: r.ref(), At: r.w.now(), State: "canceled"})
		return
	case success:
		state = tc.StateCompleted
	case kind != taskerr.Failed:
		state, reason = tc.StateException, kind.Reason()
	case out.exited && r.payload != nil && r.payload.OnExitStatus != nil && slices.Contains(r.payload.OnExitStatus.Retry, out.exitCode):
		state, reason = tc.StateException, tc.ReasonIntermittentTask
	default:
		state = tc.StateFailed
	}
	full := state
	if reason != "" {
		full += "/" + reason
	}

	r.journalResolving(full)
	end := r.claimWindow()
	err := report(tc.RetryUntil(ctx, end), r.queue(), r.taskID, r.runID, state, reason)
	applied := false
	if err != nil && (tc.IsConflict(err) || transient(err)) {
		// A conflict, or a failure that may hide an attempt the queue
		// applied: the task's status tells.
		applied = r.resolvedAs(ctx, state, reason)
	}
	switch {
	case err == nil:
		r.logger.Info("task resolved", "taskState", full)
	case applied:
		r.logger.Info("task resolved", "taskState", full, "confirmedBy", "task status")
	case tc.IsConflict(err):
		// The queue resolved the run first (cancelled, deadline, claim
		// expired): nothing to report.
		r.logger.Info("task already resolved by the queue", "taskState", full, "error", err)
		state, reason = "canceled", ""
	default:
		r.logger.Error("could not resolve task", "taskState", full, "error", err)
		return
	}
	r.mark(phaseResolved)
	r.w.hooks.emit(features.Event{Kind: features.Resolved, Run: r.ref(), At: r.w.now(), State: state, Reason: reason})
}

// report sends a run's resolution: state completed, failed or exception
// (with reason).
func report(ctx context.Context, q RunQueue, taskID string, runID int, state, reason string) error {
	var err error
	switch state {
	case tc.StateCompleted:
		_, err = q.ReportCompleted(ctx, taskID, runID)
	case tc.StateFailed:
		_, err = q.ReportFailed(ctx, taskID, runID)
	default:
		_, err = q.ReportException(ctx, taskID, runID, reason)
	}
	return err
}

// resolvedAs reports whether the queue says the run is resolved as state
// (with reason, for an exception).
func (r *run) resolvedAs(ctx context.Context, state, reason string) bool {
	resp, err := r.w.status.status(ctx, r.taskID)
	if err != nil {
		r.logger.Warn("could not read the task status after a failed report", "error", err)
		return false
	}
	runs := resp.Status.Runs
	if r.runID >= len(runs) {
		return false
	}
	if reason == "" {
		reason = state
	}
	got := runs[r.runID]
	return got.State == state && got.ReasonResolved == reason
}
