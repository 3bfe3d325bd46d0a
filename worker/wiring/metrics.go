package wiring

import (
	"context"
	"fmt"
	"log/slog"
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
// extension that writes a point per run (and per image, cache and kind of
// upload of the run), per claim error, failed queue call, spot notice and
// recovery, the capacity every influx.capacityInterval and the host every
// metricsCollection.hostMetricsInterval. It returns
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
		points:       sink,
		flush:        sink.Close,
		runs:         metrics.NewRuns(sink),
		capacity:     cfg.Capacity,
		interval:     cfg.InfluxCapacityInterval(),
		host:         &metrics.Host{Volume: cfg.DockerVolume},
		hostInterval: cfg.HostMetricsInterval(),
		log:          opts.Logger.With("component", "metrics"),
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
	// slots follows the busy slots from Init on.
	slots *metrics.Slots
	// host is read every hostInterval (0: never).
	host         *metrics.Host
	hostInterval time.Duration
	log          *slog.Logger

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
	e.slots = metrics.NewSlots(e.capacity, time.Now())
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(e.interval)
		defer tick.Stop()
		for {
			now := time.Now()
			e.slots.Set(len(runs.List()), now)
			e.slots.Point(e.points, e.runs.RunTime(), now)
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
		}
	})
	if e.hostInterval > 0 {
		wg.Go(func() { e.hostLoop(ctx) })
	}
	go func() {
		wg.Wait()
		close(e.done)
	}()
	return nil
}

// hostLoop writes a host point now and every hostInterval until ctx
// ends; a part of the host that cannot be read is logged once.
func (e *metricsExtension) hostLoop(ctx context.Context) {
	tick := time.NewTicker(e.hostInterval)
	defer tick.Stop()
	warned := false
	for {
		s, err := e.host.Sample()
		if err != nil && !warned {
			e.log.Warn("metrics: host points lack what cannot be read", "error", err)
			warned = true
		}
		metrics.HostPoint(e.points, s, time.Now())
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// RunEvent follows the run's phases; it never blocks.
func (e *metricsExtension) RunEvent(ev features.Event) {
	r := ev.Run
	switch ev.Kind {
	case features.Claimed:
		e.runs.Claimed(r.TaskID, r.RunID, ev.At)
		e.addSlots(1, ev.At)
	case features.PhaseReached:
		e.runs.Phase(r.TaskID, r.RunID, ev.Phase, ev.At)
	case features.FirstOutput:
		e.runs.FirstOutput(r.TaskID, r.RunID, ev.At)
	case features.ImageReady:
		i := ev.Image
		metrics.Image(e.points, r.TaskID, r.RunID, i.Kind, i.Cached, i.Shared, i.Bytes, i.Took, ev.At)
	case features.CacheUsed:
		metrics.Cache(e.points, r.TaskID, r.RunID, ev.Cache.Name, ev.Cache.Hit, ev.At)
	case features.ArtifactUploaded:
		a := ev.Artifact
		e.runs.Upload(r.TaskID, r.RunID, a.Bytes, a.Took, a.Failed, ev.At)
	case features.Resolved:
		e.runs.Resolved(r.TaskID, r.RunID, ev.State, ev.Reason, ev.At)
		e.addSlots(-1, ev.At)
	}
}

// addSlots changes the busy slots once Init has run.
func (e *metricsExtension) addSlots(delta int, at time.Time) {
	e.mu.Lock()
	s := e.slots
	e.mu.Unlock()
	if s != nil {
		s.Add(delta, at)
	}
}

// maxClaimErrorMessage bounds the message field of a claim_error point.
const maxClaimErrorMessage = 500

// WorkerEvent writes claim errors and recoveries; it never blocks.
func (e *metricsExtension) WorkerEvent(ev features.WorkerEvent) {
	switch ev.Kind {
	case features.ClaimFailed:
		metrics.ClaimError(e.points, tc.StatusCode(ev.Err), truncate(ev.Err), ev.At)
	case features.Recovered:
		r := ev.Recovery
		metrics.Recovery(e.points, r.ContainersRemoved, r.RunsResolved, r.RunsExpired, r.RunsFailed, r.Took, ev.At)
	case features.QueueCallFailed:
		c := ev.Call
		metrics.QueueError(e.points, c.Service, c.Method, c.Status, truncate(ev.Err), ev.At)
	case features.SpotNotice:
		metrics.SpotNotice(e.points, ev.Notice.Action, ev.Notice.Time, ev.At)
	}
}

// truncate is err's message, at most maxClaimErrorMessage bytes.
func truncate(err error) string {
	if err == nil {
		return ""
	}
	msg := err.Error()
	if len(msg) > maxClaimErrorMessage {
		msg = msg[:maxClaimErrorMessage]
	}
	return msg
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
