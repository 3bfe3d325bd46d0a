// Package wiring builds a worker from its configuration: the queue
// clients, the Docker client, the live log server and the feature list in
// their fixed order. cmd/docker-worker and the end-to-end tests both build
// workers with it, so the tests run exactly what the binary runs. It is the
// one package of the worker that knows every feature.
package wiring

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	allowptrace "go.dockerworker.dev/docker-worker/features/allowPtrace"
	"go.dockerworker.dev/docker-worker/features/artifacts"
	"go.dockerworker.dev/docker-worker/features/backinglog"
	bulklog "go.dockerworker.dev/docker-worker/features/bulkLog"
	"go.dockerworker.dev/docker-worker/features/capabilities"
	chainoftrust "go.dockerworker.dev/docker-worker/features/chainOfTrust"
	"go.dockerworker.dev/docker-worker/features/image"
	locallivelog "go.dockerworker.dev/docker-worker/features/localLiveLog"
	"go.dockerworker.dev/docker-worker/schemas"
	"go.dockerworker.dev/docker-worker/worker"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/diskgc"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/journal"
	"go.dockerworker.dev/docker-worker/worker/livelog"
	"go.dockerworker.dev/docker-worker/worker/metrics"
	"go.dockerworker.dev/docker-worker/worker/shutdown"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// Options are what the caller decides beyond the config.
type Options struct {
	Logger *slog.Logger
	// Version and Hostname are printed in task log headers.
	Version  string
	Hostname string
	// TempDir holds the features' per-task files ("" for the system
	// default).
	TempDir string
	// Docker is the Docker client to use; nil connects to the daemon the
	// environment names (and Close closes it).
	Docker *docker.Client
	// Extensions are worker services beside the features.
	Extensions []features.Extension
	// ExtraFeatures are appended to the built-in feature list (a test's
	// observers of the task log, for example).
	ExtraFeatures []features.Feature
	// ShutdownAction is what shutting down means when the worker stops
	// itself (nil: shutdown.command, else just exit); see shutdown.go.
	ShutdownAction shutdown.Action
	// Credentials are the worker's own credentials; nil takes them from
	// the config (taskcluster.*). Build uses them for every call made
	// with the worker's credentials, so that Set on them reaches all.
	Credentials *WorkerCredentials
	// Registration, when set, is the worker's registration with
	// worker-manager (see LoadConfig and provider.go).
	Registration *Registration
	// Stdout receives docker-worker's WORKER_METRICS lines (nil:
	// os.Stdout).
	Stdout io.Writer
}

// Worker is a built worker and what it holds.
type Worker struct {
	*worker.Worker
	// LiveLog is the live log server (nil when it could not start).
	LiveLog *livelog.Server
	// Credentials are the worker's own credentials (Options.Credentials,
	// or those of the config); Set on them swaps them for every client.
	Credentials *WorkerCredentials
	// Metrics is the InfluxDB sink (nil without influx.url).
	Metrics *metrics.Sink
	closers []func() error
	self    *selfStop

	closeOnce sync.Once
	closeErr  error
}

// Close releases what Build started (after Run returned): the live log
// server, the Docker client it opened, the state directory's lock, ....
// Later calls return the first call's result.
func (w *Worker) Close() error {
	w.closeOnce.Do(func() {
		var errs []error
		for _, c := range slices.Backward(w.closers) {
			errs = append(errs, c())
		}
		w.closeErr = errors.Join(errs...)
	})
	return w.closeErr
}

// Build wires a worker for cfg. It connects to Docker and starts the live
// log server; nothing is claimed until Run.
func Build(ctx context.Context, cfg *config.Config, opts Options) (*Worker, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := CheckRequiredFiles(cfg); err != nil {
		return nil, err
	}
	if opts.Credentials == nil {
		opts.Credentials = NewWorkerCredentials(cfg)
	}
	out := &Worker{Credentials: opts.Credentials}
	fail := func(err error) (*Worker, error) {
		out.Close()
		return nil, err
	}
	j, err := journal.Open(cfg.StateDir)
	if err != nil {
		return fail(fmt.Errorf("stateDir %s: %w", cfg.StateDir, err))
	}
	out.closers = append(out.closers, j.Close)
	if opts.TempDir == "" {
		opts.TempDir = j.TempDir()
	}
	dc := opts.Docker
	if dc == nil {
		var err error
		if dc, err = docker.New(ctx); err != nil {
			return fail(fmt.Errorf("connect to Docker: %w", err))
		}
		out.closers = append(out.closers, dc.Close)
	}
	validator, err := schemas.NewValidator()
	if err != nil {
		return fail(err)
	}
	live, down, err := startLiveLog(cfg, opts.Logger)
	if err != nil {
		return fail(err)
	}
	if live != nil {
		out.LiveLog = live
		out.closers = append(out.closers, live.Close)
	}
	images := &diskgc.Images{}
	feats := append(featureList(cfg, opts, trackedImages{Docker: dc, images: images}, live, down), opts.ExtraFeatures...)
	if err := CheckFeatureKeys(cfg, feats); err != nil {
		return fail(err)
	}
	disk, err := newDiskExtension(ctx, cfg, dc, opts, images, cacheSources(feats)...)
	if err != nil {
		return fail(err)
	}
	exts := append([]features.Extension{disk, newDockerHealthExtension(cfg, j.ID(), dc, opts.Logger)}, opts.Extensions...)
	if cfg.Pulse.URL != "" {
		pe, err := newPulseExtension(cfg, opts.Logger)
		if err != nil {
			return fail(err)
		}
		out.closers = append(out.closers, pe.close)
		exts = append(exts, pe)
	}
	exts = append(exts, out.selfStopExtensions(cfg, opts)...)
	if opts.Registration != nil {
		exts = append(exts, out.providerExtensions(opts.Registration, opts.Logger)...)
	}
	exts = append(exts, newWorkerMetricsExtension(cfg, opts.Stdout))
	if exts, err = addMetrics(cfg, &opts, out, exts); err != nil {
		return fail(err)
	}
	if exts, err = out.withStatus(ctx, cfg, opts, dc, exts); err != nil {
		return fail(err)
	}
	queue := opts.Credentials
	out.Worker = worker.New(worker.Options{
		Config:      cfg,
		Queue:       queue,
		StatusQueue: tc.New(tc.Config{RootURL: cfg.RootURL}),
		RunQueue:    func(c tc.Credentials) worker.RunQueue { return queue.Client().WithCredentials(c) },
		Docker:      dc,
		Validator:   validator,
		Features:    feats,
		Extensions:  exts,
		Journal:     j,
		Logger:      opts.Logger,
		Version:     opts.Version,
		Hostname:    opts.Hostname,
	})
	reportFailedCalls(out.Worker, queue)
	return out, nil
}

// startLiveLog starts the live log server. With logging.secureLiveLogging
// and a certificate or key that cannot be loaded it logs docker-worker's
// operator alert and returns no server but the reason (the feature then
// holds the claim loop at zero); any other failure (no free port) is an
// error.
func startLiveLog(cfg *config.Config, logger *slog.Logger) (*livelog.Server, string, error) {
	lc := livelog.Config{
		Address:      cfg.Logging.LiveLogBindAddress,
		Port:         cfg.Logging.LiveLogPort,
		PortRangeEnd: cfg.Logging.LiveLogPortRangeEnd,
		Logger:       logger.With("component", "livelog"),
	}
	if cfg.Logging.SecureLiveLogging {
		lc.CertFile, lc.KeyFile = cfg.SSL.Certificate, cfg.SSL.Key
		if _, err := tls.LoadX509KeyPair(lc.CertFile, lc.KeyFile); err != nil {
			logger.Error("[alert-operator] ssl certificate error",
				"certificate", lc.CertFile, "key", lc.KeyFile, "error", err,
				"effect", "logging.secureLiveLogging is on but the certificate cannot be used: claiming no tasks")
			return nil, "the live log's TLS certificate cannot be used (logging.secureLiveLogging)", nil
		}
	}
	srv, err := livelog.Start(lc)
	if err != nil {
		return nil, "", fmt.Errorf("start the live log server: %w", err)
	}
	logger.Info("live log server listening", "scheme", srv.Scheme(), "port", srv.Port(), "host", cfg.Host)
	return srv, "", nil
}

// featureList is the worker's features in docker-worker's order: the
// always-on built-ins (task log, image, capabilities), then the payload
// features.
func featureList(cfg *config.Config, opts Options, imageDocker image.Docker, live *livelog.Server, down string) []features.Feature {
	lf := locallivelog.New(live, opts.TempDir)
	if live == nil {
		lf = locallivelog.Down(down)
	}
	return []features.Feature{
		backinglog.New(opts.TempDir),
		imageFeature(cfg, imageDocker),
		capabilities.New(capabilities.Config{
			AllowPrivileged:     cfg.DockerConfig.AllowPrivileged,
			AllowDisableSeccomp: cfg.DockerConfig.AllowDisableSeccomp,
		}),
		devicesFeature(cfg, opts),
		cacheFeature(cfg, opts, imageDocker),
		lf,
		artifacts.New(artifacts.Config{
			SkipCompression: cfg.Artifacts.SkipCompressionExtensions,
			Parallelism:     cfg.Artifacts.UploadParallelism,
			TempDir:         opts.TempDir,
			Layers:          artifactLayers(cfg, imageDocker),
		}),
		chainoftrust.New(cfg.Ed25519SigningKeyLocation, opts.TempDir, opts.Logger.With("feature", chainoftrust.Name)),
		bulklog.New(opts.TempDir),
		proxyFeature(cfg, opts, imageDocker),
		dindFeature(cfg, opts, imageDocker),
		dockerSaveFeature(cfg, opts, imageDocker),
		interactiveFeature(cfg, opts, imageDocker),
		allowptrace.New(),
	}
}

// artifactLayers is the Docker client when it can describe a container's
// layers (the real one), for reading artifacts without the archive API,
// unless the config turns that off.
func artifactLayers(cfg *config.Config, d image.Docker) artifacts.Layers {
	if cfg.Artifacts.ArchiveOnly {
		return nil
	}
	if t, ok := d.(trackedImages); ok {
		d = t.Docker
	}
	if l, ok := d.(artifacts.Layers); ok {
		return l
	}
	return nil
}

// PayloadCheck is the check the worker runs on payloads, built without
// starting anything (for `docker-worker validate`).
func PayloadCheck(cfg *config.Config) *worker.PayloadCheck {
	return worker.NewPayloadCheck(cfg, inertFeatures(cfg))
}

// FeatureNames are the payload features a worker has: the names config
// key features.<name> may use (see config.Load).
func FeatureNames() []string {
	cfg := config.Default()
	return worker.NewPayloadCheck(cfg, inertFeatures(cfg)).Names()
}

// inertFeatures is the feature list built without Docker or a live log
// server, for questions about names and payload sections only.
func inertFeatures(cfg *config.Config) []features.Feature {
	return featureList(cfg, Options{Logger: slog.New(slog.DiscardHandler), Credentials: NewWorkerCredentials(cfg)}, nil, nil, "")
}

// CheckFeatureKeys refuses config keys features.<name> that name no
// payload feature of feats (nil: the worker's own list).
func CheckFeatureKeys(cfg *config.Config, feats []features.Feature) error {
	if feats == nil {
		feats = inertFeatures(cfg)
	}
	names := worker.NewPayloadCheck(cfg, feats).Names()
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(cfg.Features)) {
		if !slices.Contains(names, name) {
			errs = append(errs, fmt.Errorf("features.%s: is not a feature (known: %s)", name, strings.Join(names, ", ")))
		}
	}
	return errors.Join(errs...)
}

// PullPolicy is the configured image pull retry policy.
func PullPolicy(cfg *config.Config) docker.PullPolicy {
	return docker.PullPolicy{
		Attempts:      cfg.DockerConfig.MaxAttempts,
		BaseDelay:     time.Duration(cfg.DockerConfig.DelayFactor) * time.Millisecond,
		Randomization: cfg.DockerConfig.RandomizationFactor,
		StallTimeout:  cfg.PullStallTimeoutDuration(),
	}
}
