package wiring

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
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

// The worker's log messages the metrics count. The worker reports these
// events only in its log, so the metrics read them there.
const (
	logClaimError          = "[alert-operator] task retrieval error"
	logCredentialsRejected = "[alert-operator] the queue rejects the worker's credentials"
	logRecovered           = "recovered what a previous process left"
)

// addMetrics wires the metrics when influx.url is set: a sink, an
// extension that writes a point per run and the capacity every
// influx.capacityInterval, and a log handler in front of opts.Logger that
// turns claim errors and recoveries into points. It returns exts with the
// extension added; out closes the sink.
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
		sink:     sink,
		runs:     metrics.NewRuns(sink),
		capacity: cfg.Capacity,
		interval: cfg.InfluxCapacityInterval(),
	}
	opts.Logger = slog.New(&metricsLogHandler{next: opts.Logger.Handler(), sink: sink})
	out.Metrics = sink
	out.closers = append(out.closers, e.close)
	return append(exts, e), nil
}

// metricsExtension writes each run's task point and the capacity.
type metricsExtension struct {
	sink     *metrics.Sink
	runs     *metrics.Runs
	capacity int
	interval time.Duration

	mu     sync.Mutex
	stop   context.CancelFunc
	done   chan struct{}
	closed bool
}

var (
	_ features.Extension = (*metricsExtension)(nil)
	_ features.Observer  = (*metricsExtension)(nil)
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
			metrics.Capacity(e.sink, len(runs.List()), e.capacity, time.Now())
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
	return e.sink.Close(ctx)
}

// metricsLogHandler passes every record on to next and writes a point for
// the worker's claim errors and recoveries.
type metricsLogHandler struct {
	next slog.Handler
	sink metrics.Adder
}

func (h *metricsLogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || h.next.Enabled(ctx, l)
}

func (h *metricsLogHandler) Handle(ctx context.Context, r slog.Record) error {
	switch {
	case r.Message == logClaimError, strings.HasPrefix(r.Message, logCredentialsRejected):
		status, msg := 0, ""
		if err, ok := recordAttr(r, "error").(error); ok {
			status, msg = tc.StatusCode(err), err.Error()
		}
		const maxMessage = 500
		if len(msg) > maxMessage {
			msg = msg[:maxMessage]
		}
		metrics.ClaimError(h.sink, status, msg, r.Time)
	case r.Message == logRecovered:
		n := func(key string) int {
			v, _ := recordAttr(r, key).(int64)
			return int(v)
		}
		took := time.Duration(n("ms")) * time.Millisecond
		metrics.Recovery(h.sink, n("containersRemoved"), n("runsResolved"), n("runsExpired"), n("runsFailed"), took, r.Time)
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *metricsLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &metricsLogHandler{next: h.next.WithAttrs(as), sink: h.sink}
}

func (h *metricsLogHandler) WithGroup(name string) slog.Handler {
	return &metricsLogHandler{next: h.next.WithGroup(name), sink: h.sink}
}

// recordAttr is the value of r's attribute key (nil when absent).
func recordAttr(r slog.Record, key string) any {
	var v any
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value.Resolve().Any()
			return false
		}
		return true
	})
	return v
}
