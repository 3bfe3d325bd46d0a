package worker

import (
	"context"
	"fmt"
	"time"

	"go.dockerworker.dev/docker-worker/worker/taskerr"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// watchStatus polls the task's status every interval and cancels the task
// as soon as the queue no longer has this run running (cancelTask, deadline
// exceeded, claim expired), so a cancelled task stops within one interval
// instead of at its next reclaim. Errors are only logged: the reclaim loop
// remains the authority. It returns when stop is closed or ctx is done.
func (r *run) watchStatus(ctx context.Context, cancel context.CancelCauseFunc, stop <-chan struct{}, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-stop:
			return
		case <-ctx.Done():
			return
		}
		resp, err := r.w.opts.Queue.Status(ctx, r.taskID)
		if err != nil {
			if ctx.Err() == nil {
				r.logger.Debug("status poll failed", "error", err)
			}
			continue
		}
		runs := resp.Status.Runs
		if r.runID >= len(runs) {
			continue
		}
		if run := runs[r.runID]; run.State != tc.StateRunning {
			r.logger.Info("cancel task", "state", run.State, "reasonResolved", run.ReasonResolved)
			cancel(taskerr.Canceled(fmt.Errorf("the queue resolved run %d as %s/%s", r.runID, run.State, run.ReasonResolved)))
			return
		}
	}
}
