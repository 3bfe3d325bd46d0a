package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.dockerworker.dev/docker-worker/worker/taskerr"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// errClaimLost is the cause of a run aborted because no reclaim got
// through before takenUntil: the queue resolves such a run itself
// (claim-expired, retried while the task has retries left), and the run's
// credentials are no longer valid.
var errClaimLost = errors.New("claim lost")

// reclaimLoop keeps the claim alive: it reclaims at
// (takenUntil-now)/reclaimDivisor until stop is closed. A reclaim that
// fails with a 5xx answer, a network error or a timeout is retried until
// takenUntil, since the claim holds until then. A 409 means the queue
// resolved the run (cancelled, deadline passed): the task is cancelled and
// nothing is reported. When takenUntil passes without a successful reclaim
// the claim is lost: the task is cancelled the same way, and the queue
// resolves the run (claim-expired). Any other answer (a 4xx) aborts the
// task with internal-error.
func (r *run) reclaimLoop(ctx context.Context, stop <-chan struct{}) {
	for {
		until := r.claimEnd()
		wait := time.Duration(float64(until.Sub(r.w.now())) / r.w.cfg.Task.ReclaimDivisor)
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
		start := r.w.now()
		resp, err := r.queue().ReclaimTask(tc.RetryUntil(ctx, until), r.taskID, r.runID)
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
			switch {
			case tc.IsConflict(err):
				r.cancel(taskerr.Canceled(fmt.Errorf("Could not reclaim task. %w", err)))
			case transient(err):
				r.logger.Error("[alert-operator] could not reclaim the task before its claim expired; the queue resolves the run", "takenUntil", until, "error", err)
				r.cancel(taskerr.Canceled(fmt.Errorf("%w: could not reclaim the task before takenUntil %s: %w",
					errClaimLost, until.UTC().Format(time.RFC3339), err)))
			default:
				r.cancel(taskerr.InternalError(fmt.Errorf("reclaim task: %w", err)))
			}
			return
		}
		r.mu.Lock()
		r.creds = resp.Credentials
		r.takenUntil = resp.TakenUntil
		r.mu.Unlock()
		r.journalReclaimed(resp.Credentials, resp.TakenUntil)
		r.logger.Info("reclaimed task", "takenUntil", resp.TakenUntil, "took", r.w.now().Sub(start))
	}
}
