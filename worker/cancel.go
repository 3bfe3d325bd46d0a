package worker

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"go.dockerworker.dev/docker-worker/worker/tc"
)

// statusPoller asks the queue for task statuses, so that a cancelled run
// stops within one poll interval instead of at its next reclaim.
//
// queue.status needs queue:status:<taskId>. The worker's own client has it
// only when its role grants it; run credentials never do. So the poller
// asks with the worker's credentials first and, when the queue refuses
// (403), without credentials (the deployment's anonymous role). When both
// are refused it warns once and stops polling for the life of the worker:
// cancellation is then noticed at the next reclaim.
type statusPoller struct {
	clients []StatusQueue
	log     *slog.Logger

	mu      sync.Mutex
	next    int // index of the first client not refused yet
	warned  bool
	lastErr error
}

func newStatusPoller(own Queue, anon StatusQueue, log *slog.Logger) *statusPoller {
	p := &statusPoller{log: log}
	if own != nil {
		p.clients = append(p.clients, own)
	}
	if anon != nil {
		p.clients = append(p.clients, anon)
	}
	return p
}

// usable reports whether any client may still be asked.
func (p *statusPoller) usable() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.next < len(p.clients)
}

// status returns the task's status, moving on to the next client when one
// is refused. ok is false when no answer could be had.
func (p *statusPoller) status(ctx context.Context, taskID string) (*tc.TaskStatusResponse, error) {
	for {
		p.mu.Lock()
		i := p.next
		p.mu.Unlock()
		if i >= len(p.clients) {
			return nil, fmt.Errorf("status polling is off: %w", p.lastErr)
		}
		resp, err := p.clients[i].Status(ctx, taskID)
		if err == nil {
			return resp, nil
		}
		if tc.StatusCode(err) != http.StatusForbidden {
			return nil, err
		}
		p.mu.Lock()
		if p.next == i {
			p.next++
			p.lastErr = err
			if p.next >= len(p.clients) && !p.warned {
				p.warned = true
				p.log.Warn("[alert-operator] cannot poll task status: the queue refuses queue.status to the worker's client and to anonymous requests; cancelled tasks are noticed at the next reclaim. Grant queue:status:* to the worker's role (or the anonymous role) to stop cancelled tasks within task.statusPollInterval",
					"error", err)
			}
		}
		p.mu.Unlock()
	}
}

// watchStatus polls the run's status every interval and cancels the run as
// soon as the queue no longer has it running (cancelTask, deadline
// exceeded, claim expired). Other errors are logged at debug level: the
// reclaim loop remains the authority. It returns when stop is closed or ctx
// is done.
func (r *run) watchStatus(ctx context.Context, stop <-chan struct{}, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for r.w.status.usable() {
		select {
		case <-t.C:
		case <-stop:
			return
		case <-ctx.Done():
			return
		}
		resp, err := r.w.status.status(ctx, r.taskID)
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
			r.w.runs.Cancel(r.taskID, r.runID, fmt.Errorf("the queue resolved run %d as %s/%s", r.runID, run.State, run.ReasonResolved))
			return
		}
	}
}
