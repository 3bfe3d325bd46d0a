package worker

import (
	"context"
	"fmt"
	"time"

	"go.dockerworker.dev/docker-worker/worker/taskerr"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// reclaimLoop keeps the claim alive: it reclaims at
// (takenUntil-now)/reclaimDivisor until stop is closed. A 409 means the queue
// resolved the run (cancelled, deadline passed): the task is cancelled and
// nothing is reported. Any other failure aborts the task with internal-error.
func (r *run) reclaimLoop(ctx context.Context, stop <-chan struct{}) {
	for {
		r.mu.Lock()
		wait := time.Duration(float64(r.takenUntil.Sub(r.w.now())) / r.w.cfg.Task.ReclaimDivisor)
		r.mu.Unlock()
		r.logger.Debug("next claim", "in", wait)
		t := time.NewTimer(max(wait, 0))
		select {
		case <-t.C:
		case <-stop:
			t.Stop()
			return
		case <-ctx.Done():
			t.Stop()
			return
		}
		r.logger.Info("reclaiming task")
		resp, err := r.queue().ReclaimTask(ctx, r.taskID, r.runID)
		if err != nil {
			select {
			case <-stop:
				return // the run finished while we reclaimed
			default:
			}
			if ctx.Err() != nil {
				return
			}
			r.logger.Warn("error reclaiming task", "error", err)
			if tc.IsConflict(err) {
				r.cancel(taskerr.Canceled(fmt.Errorf("Could not reclaim task. %w", err)))
			} else {
				r.cancel(taskerr.InternalError(fmt.Errorf("reclaim task: %w", err)))
			}
			return
		}
		r.mu.Lock()
		r.creds = resp.Credentials
		r.takenUntil = resp.TakenUntil
		r.mu.Unlock()
		r.journalReclaimed(resp.Credentials, resp.TakenUntil)
		r.logger.Info("reclaimed task", "takenUntil", resp.TakenUntil)
	}
}
