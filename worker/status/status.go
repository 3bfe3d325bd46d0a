// Package status answers what the worker is doing: an HTTP endpoint with a
// JSON summary at / (version, uptime, capacity, the runs in progress and
// the phase each is in, the last claim, whether the queue and Docker
// answer, free disk, counters) and Prometheus metrics at /metrics. It is a
// worker extension: it learns everything from run events and claim hooks,
// and asks the queue, Docker and the filesystem only when a summary is
// requested.
package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"go.dockerworker.dev/docker-worker/features"
)

// probeTimeout bounds each reachability check of a summary.
const probeTimeout = 3 * time.Second

// Config is what the endpoint reports besides what it observes.
type Config struct {
	// Listen is the host:port to listen on.
	Listen string
	// Version is the worker's version.
	Version string
	// WorkerPoolID, WorkerGroup and WorkerID name the worker.
	WorkerPoolID, WorkerGroup, WorkerID string
	// Capacity is the number of tasks the worker runs at once.
	Capacity int
	// Volume is the directory whose filesystem's free space is reported
	// (the Docker volume); "" reports none.
	Volume string
	// PingQueue and PingDocker check that the queue and the Docker daemon
	// answer; nil reports nothing for that service.
	PingQueue, PingDocker func(ctx context.Context) error
	// TaskImage names a task's image (asked once per claimed run, in the
	// background); nil leaves images empty.
	TaskImage func(ctx context.Context, taskID string) (string, error)
	Logger    *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Server is the status endpoint. Make it with New, register it as a worker
// extension, and Close it when the worker has stopped.
type Server struct {
	cfg     Config
	started time.Time
	ln      net.Listener
	srv     *http.Server
	done    chan struct{}
	bg      sync.WaitGroup
	stopBg  context.CancelFunc
	bgCtx   context.Context

	mu        sync.Mutex
	runs      map[features.RunRef]*runState
	lastClaim Claim
	claimed   int
	resolved  map[string]int // by state, "exception/<reason>" for exceptions

	m metrics
}

type runState struct {
	phase    string
	since    time.Time
	lastMark time.Time // when the run reached its last phase (first output aside)
	image    string
}

// Summary is the JSON document at /.
type Summary struct {
	Version       string       `json:"version"`
	WorkerPoolID  string       `json:"workerPoolId"`
	WorkerGroup   string       `json:"workerGroup"`
	WorkerID      string       `json:"workerId"`
	Started       time.Time    `json:"started"`
	UptimeSeconds float64      `json:"uptimeSeconds"`
	Capacity      Capacity     `json:"capacity"`
	Running       []RunningRun `json:"runningTasks"`
	LastClaim     Claim        `json:"lastClaim"`
	Queue         *Reach       `json:"queue,omitempty"`
	Docker        *Reach       `json:"docker,omitempty"`
	Disk          *Disk        `json:"disk,omitempty"`
	Counters      Counters     `json:"counters"`
}

// Capacity is how many tasks the worker runs and may run.
type Capacity struct {
	Total   int `json:"total"`
	Running int `json:"running"`
	Free    int `json:"free"`
}

// RunningRun is a run in progress. Phase is the last phase it reached
// ("claimed", "image", "created", "started", "firstOutput", "exited",
// "artifacts", "logUploaded"), Since when it reached it.
type RunningRun struct {
	TaskID string    `json:"taskId"`
	RunID  int       `json:"runId"`
	Phase  string    `json:"phase"`
	Since  time.Time `json:"since"`
	Image  string    `json:"image,omitempty"`
}

// Claim is the last claimWork call and the last run it brought.
type Claim struct {
	// Attempted is when the worker last asked the queue for work.
	Attempted *time.Time `json:"attempted,omitempty"`
	// Claimed is when it last got a run, which TaskID/RunID name.
	Claimed *time.Time `json:"claimed,omitempty"`
	TaskID  string     `json:"taskId,omitempty"`
	RunID   int        `json:"runId"`
}

// Reach says whether a service answered.
type Reach struct {
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
}

// Disk is the free space of the Docker volume's filesystem.
type Disk struct {
	Path      string `json:"path"`
	FreeBytes int64  `json:"freeBytes"`
	Error     string `json:"error,omitempty"`
}

// Counters count runs since the worker started.
type Counters struct {
	Claimed int `json:"claimed"`
	// Resolved counts resolved runs by state ("completed", "failed",
	// "canceled", and "exception/<reason>").
	Resolved map[string]int `json:"resolved"`
}

// New starts listening on cfg.Listen and serving.
func New(cfg Config) (*Server, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("status endpoint: %w", err)
	}
	s := &Server{
		cfg:      cfg,
		started:  cfg.Now(),
		ln:       ln,
		done:     make(chan struct{}),
		runs:     map[features.RunRef]*runState{},
		resolved: map[string]int{},
	}
	s.bgCtx, s.stopBg = context.WithCancel(context.Background())
	reg := s.registerMetrics()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.serveSummary)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cfg.Logger.Error("status endpoint stopped", "error", err)
		}
	}()
	cfg.Logger.Info("status endpoint listening", "address", ln.Addr().String())
	return s, nil
}

// Addr is the address the endpoint listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the endpoint and its background look-ups.
func (s *Server) Close() error {
	s.stopBg()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.done
	s.bg.Wait()
	return err
}

var _ features.Extension = (*Server)(nil)

// Init observes the worker's runs and claims.
func (s *Server) Init(_ context.Context, h features.Host) error {
	h.Observe(s)
	h.BeforeClaim(func(context.Context, int) (int, string) {
		now := s.cfg.Now()
		s.mu.Lock()
		s.lastClaim.Attempted = &now
		s.mu.Unlock()
		s.m.lastAttempt.Set(float64(now.UnixNano()) / 1e9)
		return s.cfg.Capacity, ""
	})
	return nil
}

// RunEvent records what happened to a run.
func (s *Server) RunEvent(ev features.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch ev.Kind {
	case features.Claimed:
		s.runs[ev.Run] = &runState{phase: "claimed", since: ev.At, lastMark: ev.At}
		at := ev.At
		s.lastClaim.Claimed, s.lastClaim.TaskID, s.lastClaim.RunID = &at, ev.Run.TaskID, ev.Run.RunID
		s.claimed++
		s.m.claimed.Inc()
		s.m.running.Set(float64(len(s.runs)))
		if s.cfg.TaskImage != nil {
			s.lookUpImage(ev.Run)
		}
	case features.PhaseReached, features.FirstOutput:
		rs := s.runs[ev.Run]
		if rs == nil {
			return
		}
		phase := ev.Phase
		if ev.Kind == features.FirstOutput {
			phase = "firstOutput"
		} else {
			// Phase durations follow the worker's task timings: from
			// the previous phase (first output is not a phase).
			s.m.phase.WithLabelValues(phase).Observe(ev.At.Sub(rs.lastMark).Seconds())
			rs.lastMark = ev.At
		}
		// First output may be told before the start it follows; the
		// phase shown only moves forward.
		if phaseRank(phase) >= phaseRank(rs.phase) {
			rs.phase, rs.since = phase, ev.At
		}
	case features.Resolved:
		key := ev.State
		if ev.State == "exception" && ev.Reason != "" {
			key += "/" + ev.Reason
		}
		s.resolved[key]++
		s.m.resolved.WithLabelValues(ev.State, ev.Reason).Inc()
		delete(s.runs, ev.Run)
		s.m.running.Set(float64(len(s.runs)))
	}
}

// phaseOrder is the order in which a run reaches its phases.
var phaseOrder = []string{"claimed", features.PhaseImage, features.PhaseCreated, features.PhaseStarted, "firstOutput",
	features.PhaseExited, features.PhaseArtifacts, features.PhaseLogUploaded, "resolved"}

// phaseRank is phase's place in phaseOrder (an unknown phase ranks last,
// so it is shown).
func phaseRank(phase string) int {
	if i := slices.Index(phaseOrder, phase); i >= 0 {
		return i
	}
	return len(phaseOrder)
}

// lookUpImage asks for a run's image in the background; s.mu is held.
func (s *Server) lookUpImage(ref features.RunRef) {
	s.bg.Go(func() {
		ctx, cancel := context.WithTimeout(s.bgCtx, 30*time.Second)
		defer cancel()
		img, err := s.cfg.TaskImage(ctx, ref.TaskID)
		if err != nil {
			s.cfg.Logger.Debug("status endpoint: no image for the task", "taskId", ref.TaskID, "error", err)
			return
		}
		s.mu.Lock()
		if rs := s.runs[ref]; rs != nil {
			rs.image = img
		}
		s.mu.Unlock()
	})
}

// Snapshot is the summary of this moment; it asks the queue and Docker
// whether they answer and reads the free disk space.
func (s *Server) Snapshot(ctx context.Context) Summary {
	now := s.cfg.Now()
	sum := Summary{
		Version:       s.cfg.Version,
		WorkerPoolID:  s.cfg.WorkerPoolID,
		WorkerGroup:   s.cfg.WorkerGroup,
		WorkerID:      s.cfg.WorkerID,
		Started:       s.started,
		UptimeSeconds: now.Sub(s.started).Seconds(),
		Running:       []RunningRun{},
	}
	s.mu.Lock()
	for ref, rs := range s.runs {
		sum.Running = append(sum.Running, RunningRun{TaskID: ref.TaskID, RunID: ref.RunID, Phase: rs.phase, Since: rs.since, Image: rs.image})
	}
	sum.LastClaim = s.lastClaim
	sum.Counters = Counters{Claimed: s.claimed, Resolved: make(map[string]int, len(s.resolved))}
	for k, v := range s.resolved {
		sum.Counters.Resolved[k] = v
	}
	s.mu.Unlock()
	sort.Slice(sum.Running, func(i, j int) bool {
		a, b := sum.Running[i], sum.Running[j]
		if !a.Since.Equal(b.Since) {
			return a.Since.Before(b.Since)
		}
		return a.TaskID < b.TaskID
	})
	sum.Capacity = Capacity{Total: s.cfg.Capacity, Running: len(sum.Running), Free: max(s.cfg.Capacity-len(sum.Running), 0)}

	var wg sync.WaitGroup
	probe := func(ping func(context.Context) error) *Reach {
		if ping == nil {
			return nil
		}
		r := &Reach{}
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, probeTimeout)
			defer cancel()
			if err := ping(pctx); err != nil {
				r.Error = err.Error()
				return
			}
			r.Reachable = true
		})
		return r
	}
	sum.Queue = probe(s.cfg.PingQueue)
	sum.Docker = probe(s.cfg.PingDocker)
	if s.cfg.Volume != "" {
		d := &Disk{Path: s.cfg.Volume}
		free, err := freeSpace(s.cfg.Volume)
		if err != nil {
			d.Error = err.Error()
		}
		d.FreeBytes = free
		sum.Disk = d
	}
	wg.Wait()
	return sum
}

func (s *Server) serveSummary(w http.ResponseWriter, r *http.Request) {
	sum := s.Snapshot(r.Context())
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(sum); err != nil {
		s.cfg.Logger.Debug("status endpoint: writing the summary failed", "error", err)
	}
}

// freeSpace is the space available to unprivileged users on the
// filesystem holding path.
func freeSpace(path string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// metrics are the Prometheus series of one server.
type metrics struct {
	claimed     prometheus.Counter
	resolved    *prometheus.CounterVec
	running     prometheus.Gauge
	lastAttempt prometheus.Gauge
	phase       *prometheus.HistogramVec
}

// registerMetrics makes the server's own registry (no global state): its
// series, the Go runtime's and the process's.
func (s *Server) registerMetrics() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	const ns = "docker_worker"
	s.m = metrics{
		claimed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "tasks_claimed_total",
			Help: "Runs claimed since the worker started."}),
		resolved: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "tasks_resolved_total",
			Help: "Runs resolved since the worker started, by state and exception reason (canceled: resolved by the queue first)."},
			[]string{"state", "reason"}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "tasks_running",
			Help: "Runs in progress."}),
		lastAttempt: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "last_claim_attempt_timestamp_seconds",
			Help: "When the worker last asked the queue for work (Unix time)."}),
		phase: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "task_phase_duration_seconds",
			Help:    "Time a run spent reaching each phase, from the previous one (the first from the claim), as the task timings record.",
			Buckets: []float64{.1, .5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600}},
			[]string{"phase"}),
	}
	constLabels := prometheus.Labels{"version": s.cfg.Version, "workerPoolId": s.cfg.WorkerPoolID,
		"workerGroup": s.cfg.WorkerGroup, "workerId": s.cfg.WorkerID}
	info := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "info",
		Help: "Always 1; its labels name the worker and its version.", ConstLabels: constLabels})
	info.Set(1)
	capacity := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "capacity",
		Help: "Tasks the worker runs at once."})
	capacity.Set(float64(s.cfg.Capacity))
	uptime := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "uptime_seconds",
		Help: "Seconds since the worker started."}, func() float64 { return s.cfg.Now().Sub(s.started).Seconds() })
	reg.MustRegister(s.m.claimed, s.m.resolved, s.m.running, s.m.lastAttempt, s.m.phase, info, capacity, uptime,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if s.cfg.Volume != "" {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "volume_free_bytes",
			Help: "Free space of the Docker volume's filesystem."}, func() float64 {
			free, err := freeSpace(s.cfg.Volume)
			if err != nil {
				return -1
			}
			return float64(free)
		}))
	}
	return reg
}
