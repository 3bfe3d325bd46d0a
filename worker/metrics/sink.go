// Package metrics sends the worker's metrics to InfluxDB: a [Sink] that
// batches points and writes them with influxdb-client-go without ever
// making its callers wait, and a [Runs] tracker that turns a run's phase
// marks into one point per run.
//
// Add never blocks: points go into a bounded buffer that one goroutine
// drains into batches. While InfluxDB is slow or down, the oldest unsent
// batch is kept and retried every flush interval; points that arrive when
// the buffer is full are dropped, and so are batches the server refuses
// (a 4xx answer other than 429). Every dropped point is counted
// ([Sink.Dropped]); write problems are logged at most once per report
// interval.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/influxdata/influxdb-client-go/v2/api"
	influxhttp "github.com/influxdata/influxdb-client-go/v2/api/http"
	"github.com/influxdata/influxdb-client-go/v2/api/write"
)

// Config says where the points go and how they are batched.
type Config struct {
	// URL is the InfluxDB server.
	URL string
	// Org, Bucket and Token address an InfluxDB 2 server.
	Org, Bucket, Token string
	// Database, RetentionPolicy, Username and Password address an
	// InfluxDB 1.8+ server through its v2 compatibility API (used when
	// Database is set).
	Database, RetentionPolicy, Username, Password string

	// Tags are added to every point.
	Tags map[string]string

	// BatchSize is the most points per write (default 500).
	BatchSize int
	// BufferSize is how many points may wait (default 10000).
	BufferSize int
	// FlushInterval is the longest a point waits for its batch, and the
	// pause before a failed batch is retried (default 10s).
	FlushInterval time.Duration
	// WriteTimeout bounds one write (default 10s).
	WriteTimeout time.Duration
	// ReportInterval is the least time between two logged write problems
	// (default one minute).
	ReportInterval time.Duration

	Logger *slog.Logger
}

// Sink batches points and writes them to InfluxDB in the background.
type Sink struct {
	cfg    Config
	client influxdb2.Client
	api    api.WriteAPIBlocking
	log    *slog.Logger

	in   chan *write.Point
	done chan struct{}
	// mu orders Add against Close: once closed is set, no point enters in.
	mu       sync.RWMutex
	closed   bool
	stop     chan struct{}
	closeCtx context.Context

	written atomic.Int64
	dropped atomic.Int64
	failed  atomic.Int64

	// Owned by the loop goroutine.
	lastErr      error
	lastReport   time.Time
	reportedDrop int64
	reportedFail int64
}

// New starts a sink for cfg. It does not contact the server: a server
// that is down only makes points wait, then drop.
func New(cfg Config) (*Sink, error) {
	if cfg.URL == "" {
		return nil, errors.New("metrics: no InfluxDB URL")
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 500
	}
	if cfg.BufferSize < cfg.BatchSize {
		cfg.BufferSize = max(10000, cfg.BatchSize)
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = 10 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.ReportInterval <= 0 {
		cfg.ReportInterval = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	token, org, bucket := cfg.Token, cfg.Org, cfg.Bucket
	if cfg.Database != "" {
		// The 1.8+ compatibility API takes "user:password" as the token,
		// no org, and "database/retention-policy" as the bucket.
		token, org, bucket = "", "", cfg.Database
		if cfg.Username != "" {
			token = cfg.Username + ":" + cfg.Password
		}
		if cfg.RetentionPolicy != "" {
			bucket += "/" + cfg.RetentionPolicy
		}
	}
	opts := influxdb2.DefaultOptions().
		SetLogLevel(0).
		SetHTTPClient(&http.Client{Timeout: cfg.WriteTimeout})
	client := influxdb2.NewClientWithOptions(cfg.URL, token, opts)
	s := &Sink{
		cfg:    cfg,
		client: client,
		api:    client.WriteAPIBlocking(org, bucket),
		log:    cfg.Logger,
		in:     make(chan *write.Point, cfg.BufferSize),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	go s.loop()
	return s, nil
}

// Add queues a point of measurement with the sink's tags, tags and fields
// at time at. It never blocks: when the buffer is full, or the sink is
// closed, the point is dropped and counted.
func (s *Sink) Add(measurement string, tags map[string]string, fields map[string]any, at time.Time) {
	all := make(map[string]string, len(s.cfg.Tags)+len(tags))
	for k, v := range s.cfg.Tags {
		if v != "" {
			all[k] = v
		}
	}
	for k, v := range tags {
		if v != "" {
			all[k] = v
		}
	}
	p := write.NewPoint(measurement, all, fields, at)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		s.dropped.Add(1)
		return
	}
	select {
	case s.in <- p:
	default:
		s.dropped.Add(1)
	}
}

// Written is how many points InfluxDB accepted.
func (s *Sink) Written() int64 { return s.written.Load() }

// Dropped is how many points were given up: the buffer was full, the sink
// was closed, or the server refused them.
func (s *Sink) Dropped() int64 { return s.dropped.Load() }

// Close stops taking points, sends those waiting until ctx ends, counts
// the rest as dropped and logs the drops not logged yet.
func (s *Sink) Close(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		s.closed, s.closeCtx = true, ctx
		close(s.stop)
	}
	s.mu.Unlock()
	<-s.done
	s.client.Close()
	return nil
}

// loop drains the buffer into batches of at most BatchSize. While a batch
// cannot be sent it is held, the buffer is not read (so that it fills and
// Add drops), and the batch is retried every FlushInterval.
func (s *Sink) loop() {
	defer close(s.done)
	tick := time.NewTicker(s.cfg.FlushInterval)
	defer tick.Stop()
	var batch []*write.Point
	for {
		in := s.in
		if len(batch) >= s.cfg.BatchSize {
			in = nil
		}
		select {
		case p := <-in:
			batch = append(batch, p)
			if len(batch) >= s.cfg.BatchSize {
				batch = s.send(context.Background(), batch)
			}
		case <-tick.C:
			batch = s.send(context.Background(), batch)
			s.report(false)
		case <-s.stop:
			s.mu.RLock()
			ctx := s.closeCtx
			s.mu.RUnlock()
			s.drain(ctx, batch)
			s.report(true)
			return
		}
	}
}

// drain sends batch and everything buffered until ctx ends or a write
// fails; what is left is dropped.
func (s *Sink) drain(ctx context.Context, batch []*write.Point) {
	for {
	fill:
		for len(batch) < s.cfg.BatchSize {
			select {
			case p := <-s.in:
				batch = append(batch, p)
			default:
				break fill
			}
		}
		if len(batch) == 0 {
			return
		}
		if ctx.Err() != nil {
			s.dropped.Add(int64(len(batch) + len(s.in)))
			return
		}
		if left := s.send(ctx, batch); len(left) > 0 {
			s.dropped.Add(int64(len(left)))
			// Do not wait on a server that is failing.
			s.dropped.Add(int64(len(s.in)))
			return
		}
		batch = nil
	}
}

// send writes batch and returns what is still to be sent: nothing when
// the server took it or refused it for good (then it is dropped), the
// batch itself when the failure may pass (no answer, 429, 5xx).
func (s *Sink) send(ctx context.Context, batch []*write.Point) []*write.Point {
	if len(batch) == 0 {
		return batch
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
	defer cancel()
	err := s.api.WritePoint(ctx, batch...)
	if err == nil {
		s.written.Add(int64(len(batch)))
		return batch[:0]
	}
	s.failed.Add(1)
	s.lastErr = err
	if !retryable(err) {
		s.dropped.Add(int64(len(batch)))
		return batch[:0]
	}
	return batch
}

// retryable reports whether a failed write may succeed later: no answer
// (connection refused, timeout), 429 or a 5xx.
func retryable(err error) bool {
	var he *influxhttp.Error
	if errors.As(err, &he) && he.StatusCode != 0 {
		return he.StatusCode == http.StatusTooManyRequests || he.StatusCode >= 500
	}
	return true
}

// report logs the write failures and drops since the last report, at most
// once per ReportInterval unless final.
func (s *Sink) report(final bool) {
	dropped, failed := s.dropped.Load(), s.failed.Load()
	if dropped == s.reportedDrop && failed == s.reportedFail {
		return
	}
	now := time.Now()
	if !final && !s.lastReport.IsZero() && now.Sub(s.lastReport) < s.cfg.ReportInterval {
		return
	}
	attrs := []any{
		"dropped", dropped - s.reportedDrop, "droppedTotal", dropped,
		"failedWrites", failed - s.reportedFail, "waiting", len(s.in),
	}
	if s.lastErr != nil {
		attrs = append(attrs, "lastError", redact(s.lastErr.Error(), s.cfg.Token, s.cfg.Password))
	}
	s.log.Warn("metrics: InfluxDB writes failing", attrs...)
	s.lastReport, s.reportedDrop, s.reportedFail = now, dropped, failed
}

// redact removes secrets from a message.
func redact(msg string, secrets ...string) string {
	for _, sec := range secrets {
		if sec != "" {
			msg = strings.ReplaceAll(msg, sec, "[redacted]")
		}
	}
	return msg
}

// String describes the sink's destination for logs, without secrets.
func (s *Sink) String() string {
	if s.cfg.Database != "" {
		return fmt.Sprintf("%s database %s", s.cfg.URL, s.cfg.Database)
	}
	return fmt.Sprintf("%s bucket %s (org %s)", s.cfg.URL, s.cfg.Bucket, s.cfg.Org)
}
