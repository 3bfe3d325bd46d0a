package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/features/artifacts"
	"go.dockerworker.dev/docker-worker/features/backinglog"
	bulklog "go.dockerworker.dev/docker-worker/features/bulkLog"
	chainoftrust "go.dockerworker.dev/docker-worker/features/chainOfTrust"
	locallivelog "go.dockerworker.dev/docker-worker/features/localLiveLog"
	"go.dockerworker.dev/docker-worker/schemas"
	"go.dockerworker.dev/docker-worker/worker"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/livelog"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// runWorker runs the worker daemon. The config file is --config FILE or
// the one argument FILE (else $DOCKER_WORKER_CONFIG); giving both, or more
// arguments, is a usage error.
func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("run", "run [flags] [FILE]  (FILE: the worker config, as --config)", stderr)
	cfgPath := fs.String("config", os.Getenv("DOCKER_WORKER_CONFIG"), "worker config file (YAML or JSON); $DOCKER_WORKER_CONFIG")
	logLevel := fs.String("log-level", "info", "worker log level: debug, info, warn, error")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	path, err := configArg(fs, *cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "docker-worker run: %v\n", err)
		fs.Usage()
		return 2
	}
	cfg, err := config.Load(path, os.Getenv)
	if err != nil {
		fmt.Fprintf(stderr, "docker-worker: bad configuration:\n%v\n", err)
		return 1
	}
	logger := newLogger(stdout, *logLevel)
	w, closeFn, err := buildWorker(ctx, cfg, logger)
	if err != nil {
		fmt.Fprintf(stderr, "docker-worker: %v\n", err)
		return 1
	}
	defer closeFn()
	return runUntilSignalled(w, logger)
}

// configArg is the config file of run: its one argument, else --config
// (or its default, $DOCKER_WORKER_CONFIG).
func configArg(fs *flag.FlagSet, flagValue string) (string, error) {
	switch fs.NArg() {
	case 0:
		return flagValue, nil
	case 1:
		given := false
		fs.Visit(func(f *flag.Flag) { given = given || f.Name == "config" })
		if given {
			return "", fmt.Errorf("the config file is given twice (--config %s and %s)", flagValue, fs.Arg(0))
		}
		return fs.Arg(0), nil
	}
	return "", fmt.Errorf("one config file only, got %d arguments: %s", fs.NArg(), strings.Join(fs.Args(), " "))
}

// buildWorker wires the worker's dependencies and its feature list.
func buildWorker(ctx context.Context, cfg *config.Config, logger *slog.Logger) (*worker.Worker, func(), error) {
	dc, err := docker.New(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to Docker: %w", err)
	}
	validator, err := schemas.NewValidator()
	if err != nil {
		dc.Close()
		return nil, nil, err
	}
	queue := tc.New(tc.Config{
		RootURL: cfg.RootURL,
		Credentials: &tc.Credentials{
			ClientID:    cfg.Taskcluster.ClientID,
			AccessToken: cfg.Taskcluster.AccessToken,
			Certificate: cfg.Taskcluster.Certificate,
		},
	})
	live, err := startLiveLog(cfg, logger)
	if err != nil {
		dc.Close()
		return nil, nil, err
	}
	hostname, _ := os.Hostname()
	w := worker.New(worker.Options{
		Config:    cfg,
		Queue:     queue,
		RunQueue:  func(c tc.Credentials) worker.RunQueue { return queue.WithCredentials(c) },
		Docker:    dc,
		Validator: validator,
		Features:  featureList(cfg, live),
		Logger:    logger,
		Version:   version,
		Hostname:  hostname,
	})
	return w, func() {
		if live != nil {
			live.Close()
		}
		dc.Close()
	}, nil
}

// startLiveLog starts the live log server. With logging.secureLiveLogging
// and a certificate or key that cannot be loaded it logs docker-worker's
// operator alert, sets the capacity to 0 (the worker claims nothing) and
// returns no server; any other failure (no free port) is an error.
func startLiveLog(cfg *config.Config, logger *slog.Logger) (*livelog.Server, error) {
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
				"effect", "logging.secureLiveLogging is on but the certificate cannot be used: claiming no tasks (capacity 0)")
			cfg.Capacity = 0
			return nil, nil
		}
	}
	srv, err := livelog.Start(lc)
	if err != nil {
		return nil, fmt.Errorf("start the live log server: %w", err)
	}
	logger.Info("live log server listening", "scheme", srv.Scheme(), "port", srv.Port(), "host", cfg.Host)
	return srv, nil
}

// featureList is the worker's features in docker-worker's order: the
// always-on task log, then the payload features.
func featureList(cfg *config.Config, live *livelog.Server) []features.Feature {
	return []features.Feature{
		backinglog.New(""),
		locallivelog.New(live, ""),
		artifacts.New(artifacts.Config{
			SkipCompression: cfg.Artifacts.SkipCompressionExtensions,
			Parallelism:     cfg.Artifacts.UploadParallelism,
		}),
		chainoftrust.New(cfg.Ed25519SigningKeyLocation, ""),
		bulklog.New(""),
	}
}

// runUntilSignalled runs w until it is told to stop: SIGINT stops claiming
// and lets running tasks finish (a second SIGINT aborts them); SIGTERM aborts
// running tasks with worker-shutdown.
func runUntilSignalled(w *worker.Worker, logger *slog.Logger) int {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		graceful := false
		for s := range sigs {
			switch {
			case s == syscall.SIGTERM:
				logger.Info("Terminating worker due to SIGTERM")
				w.Abort()
				stop()
			case graceful:
				logger.Info("second interrupt: aborting running tasks")
				w.Abort()
			default:
				logger.Info("interrupt: finishing running tasks, claiming no more")
				graceful = true
				stop()
			}
		}
	}()
	if err := w.Run(ctx); err != nil {
		logger.Error("worker stopped", "error", err)
		return 1
	}
	return 0
}
