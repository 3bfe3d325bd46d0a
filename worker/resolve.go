package worker

import (
	"context"
	"slices"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/worker/taskerr"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// resolve reports how the run ended to the queue (nothing for a cancelled
// run: the queue resolved it) and emits the Resolved event.
func (r *run) resolve(ctx context.Context, out outcome, kind taskerr.Kind, success bool) {
	q := r.queue()
	var err error
	state, reason := "", ""
	switch {
	case kind == taskerr.CanceledKind:
		r.logger.Info("task resolved", "taskState", "canceled")
		r.w.hooks.emit(features.Event{Kind: features.Resolved, Run: r.ref(), At: r.w.now(), State: "canceled"})
		return
	case success:
		state = tc.StateCompleted
		r.journalResolving(state)
		_, err = q.ReportCompleted(ctx, r.taskID, r.runID)
	case kind != taskerr.Failed:
		state, reason = tc.StateException, kind.Reason()
		r.journalResolving(state + "/" + reason)
		_, err = q.ReportException(ctx, r.taskID, r.runID, reason)
	case out.exited && r.payload != nil && r.payload.OnExitStatus != nil && slices.Contains(r.payload.OnExitStatus.Retry, out.exitCode):
		state, reason = tc.StateException, tc.ReasonIntermittentTask
		r.journalResolving(state + "/" + reason)
		_, err = q.ReportException(ctx, r.taskID, r.runID, reason)
	default:
		state = tc.StateFailed
		r.journalResolving(state)
		_, err = q.ReportFailed(ctx, r.taskID, r.runID)
	}
	full := state
	if reason != "" {
		full += "/" + reason
	}
	switch {
	case tc.IsConflict(err):
		// The queue resolved the run first (cancelled, deadline, claim
		// expired): nothing to report.
		r.logger.Info("task already resolved by the queue", "taskState", full, "error", err)
		state, reason = "canceled", ""
	case err != nil:
		r.logger.Error("could not resolve task", "taskState", full, "error", err)
		return
	default:
		r.logger.Info("task resolved", "taskState", full)
	}
	r.mark("resolved")
	r.w.hooks.emit(features.Event{Kind: features.Resolved, Run: r.ref(), At: r.w.now(), State: state, Reason: reason})
	r.logger.Info("task timings", r.timings()...)
}
