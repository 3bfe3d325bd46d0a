package wiring

import (
	"context"
	"io"
	"os"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/worker"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/metrics"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// reportFailedCalls makes every call made with the worker's credentials
// (and the run clients made from them) that fails for good a
// QueueCallFailed worker event of w.
func reportFailedCalls(w *worker.Worker, creds *WorkerCredentials) {
	creds.onFailure(func(fc tc.FailedCall) {
		w.Emit(features.WorkerEvent{Kind: features.QueueCallFailed, Err: fc.Err,
			Call: features.Call{Service: fc.Service, Method: fc.Method, Status: fc.Status}})
	})
}

// workerMetricsExtension prints docker-worker's WORKER_METRICS lines on
// stdout: instanceBoot and workerReady before the first claim, taskQueue
// (at the task's creation) and taskStart when a run is claimed,
// taskFinish when it is resolved, instanceShutdown when the worker
// stopped. None with instanceId test-worker-instance.
type workerMetricsExtension struct {
	out  *metrics.WorkerMetrics
	host *metrics.Host
	now  func() time.Time
}

var (
	_ features.Extension      = (*workerMetricsExtension)(nil)
	_ features.Observer       = (*workerMetricsExtension)(nil)
	_ features.WorkerObserver = (*workerMetricsExtension)(nil)
)

// newWorkerMetricsExtension prints to w (nil: os.Stdout).
func newWorkerMetricsExtension(cfg *config.Config, w io.Writer) *workerMetricsExtension {
	if w == nil {
		w = os.Stdout
	}
	return &workerMetricsExtension{
		out: metrics.NewWorkerMetrics(w, metrics.WorkerMetricsIdentity{
			WorkerPoolID: cfg.ProvisionerID + "/" + cfg.WorkerType, WorkerID: cfg.WorkerID,
			Region: cfg.Region, InstanceType: cfg.InstanceType, InstanceID: cfg.InstanceID,
		}),
		host: &metrics.Host{},
		now:  time.Now,
	}
}

func (e *workerMetricsExtension) Init(_ context.Context, h features.Host) error {
	h.Observe(e)
	return nil
}

// RunEvent prints the task events.
func (e *workerMetricsExtension) RunEvent(ev features.Event) {
	switch ev.Kind {
	case features.Claimed:
		if !ev.TaskCreated.IsZero() {
			e.out.Task(metrics.EventTaskQueue, ev.TaskCreated, ev.Run.TaskID, ev.Run.RunID)
		}
		e.out.Task(metrics.EventTaskStart, ev.At, ev.Run.TaskID, ev.Run.RunID)
	case features.Resolved:
		e.out.Task(metrics.EventTaskFinish, ev.At, ev.Run.TaskID, ev.Run.RunID)
	}
}

// WorkerEvent prints the worker's events.
func (e *workerMetricsExtension) WorkerEvent(ev features.WorkerEvent) {
	switch ev.Kind {
	case features.Ready:
		boot := ev.At
		if up, err := e.host.Uptime(); err == nil {
			boot = ev.At.Add(-up)
		}
		e.out.Worker(metrics.EventInstanceBoot, boot)
		e.out.Worker(metrics.EventWorkerReady, ev.At)
	case features.Stopped:
		e.out.Worker(metrics.EventInstanceShutdown, ev.At)
	}
}
