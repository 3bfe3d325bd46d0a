package wiring

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/metrics"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// metricsCloseTimeout bounds the last flush of the metrics when the
// worker is closed.
const metricsCloseTimeout = 10 * time.Second

// addMetrics wires the metrics when influx.url is set: a sink, an
// extension that writes a point per run, per claim error and per
// recovery, and the capacity every influx.capacityInterval. It returns
// exts with the extension added; out closes the sink.
func addMetrics(cfg *config.Config, opts *Options, out *Worker, exts []features.Extension) ([]features.Extension, error) {
	if cfg.Influx.URL == "" {
		return exts, nil
	}
	i := cfg.Influx
	sink, err := metrics.New(metrics.Config{
		URL: i.URL, Org: i.Org, Bucket: i.Bucket, Token: i.Token,
		Database: i.Database, RetentionPolicy: i.RetentionPolicy, Username: i.Username, Password: i.Password,
		Tags: map[string]string{
			"provisionerId": cfg.ProvisionerID, "workerType": cfg.WorkerType,
			"workerGroup": cfg.WorkerGroup, "workerId": cfg.WorkerID,
			"instanceType": cfg.InstanceType, "region": cfg.Region,
		},
		BatchSize:     i.BatchSize,
		BufferSize:    i.BufferSize,
		FlushInterval: cfg.InfluxFlushInterval(),
		WriteTimeout:  cfg.InfluxWriteTimeout(),
		Logger:        opts.Logger.With("component", "metrics"),
	})
	if err != nil {
		return nil, fmt.Errorf("influx: %w", err)
	}
	opts.Logger.Info("metrics: writing to InfluxDB", "to", sink.String(),
		"capacityInterval", cfg.InfluxCapacityInterval())
	e := &metricsExtension{
		points:   sink,
		flush:    sink.Close,
		runs:     metrics.NewRuns(sink),
		capacity: cfg.Capacity,
		interval: cfg.InfluxCapacityInterval(),
	}
	out.Metrics = sink
	out.closers = append(out.closers, e.close)
	return append(exts, e), nil
}

// metricsExtension writes each run's task point and the capacity.
type metricsExtension struct {
	// points go to the sink, which flush sends off at close.
	points   metrics.Adder
	flush    func(context.Context) error
	runs     *metrics.Runs
	capacity int
	interval time.Duration

	mu     sync.Mutex
	stop   context.CancelFunc
	done   chan struct{}
	closed bool
}

var (
	_ features.Extension      = (*metricsExtension)(nil)
	_ features.Observer       = (*metricsExtension)(nil)
	_ features.WorkerObserver = (*metricsExtension)(nil)
)

// Init observes the runs and writes the capacity now and every interval
// until the worker's context ends or close is called.
func (e *metricsExtension) Init(ctx context.Context, h features.Host) error {
	h.Observe(e)
	runs := h.Runs()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || e.done != nil {
		return nil
	}
	ctx, e.stop = context.WithCancel(ctx)
	e.done = make(chan struct{})
	go func() {
		defer close(e.done)
		tick := time.NewTicker(e.interval)
		defer tick.Stop()
		for {
			metrics.Capacity(e.points, len(runs.List()), e.capacity, time.Now())
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
		}
	}()
	return nil
}

// RunEvent follows the run's phases; it never blocks.
func (e *metricsExtension) RunEvent(ev features.Event) {
	switch ev.Kind {
	case features.Claimed:
		e.runs.Claimed(ev.Run.TaskID, ev.Run.RunID, ev.At)
	case features.PhaseReached:
		e.runs.Phase(ev.Run.TaskID, ev.Run.RunID, ev.Phase, ev.At)
	case features.FirstOutput:
		e.runs.FirstOutput(ev.Run.TaskID, ev.Run.RunID, ev.At)
	case features.Resolved:
		e.runs.Resolved(ev.Run.TaskID, ev.Run.RunID, ev.State, ev.Reason, ev.At)
	}
}

// maxClaimErrorMessage bounds the message field of a claim_error point.
const maxClaimErrorMessage = 500

// WorkerEvent writes claim errors and recoveries; it never blocks.
func (e *metricsExtension) WorkerEvent(ev features.WorkerEvent) {
	switch ev.Kind {
	case features.ClaimFailed:
		msg := ev.Err.Error()
		if len(msg) > maxClaimErrorMessage {
			msg = msg[:maxClaimErrorMessage]
		}
		metrics.ClaimError(e.points, tc.StatusCode(ev.Err), msg, ev.At)
	case features.Recovered:
		r := ev.Recovery
		metrics.Recovery(e.points, r.ContainersRemoved, r.RunsResolved, r.RunsExpired, r.RunsFailed, r.Took, ev.At)
	}
}

// close stops the capacity points and sends what is waiting, for at most
// metricsCloseTimeout.
func (e *metricsExtension) close() error {
	e.mu.Lock()
	e.closed = true
	stop, done := e.stop, e.done
	e.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
	ctx, cancel := context.WithTimeout(context.Background(), metricsCloseTimeout)
	defer cancel()
	return e.flush(ctx)
}
