package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"go.dockerworker.dev/docker-worker/worker"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/runnerproto"
	"go.dockerworker.dev/docker-worker/worker/shutdown"
	"go.dockerworker.dev/docker-worker/worker/wiring"
)

// Exit codes of run (and of dev, whose worker stops the same way).
const (
	runStopped             = 0 // stopped by a signal, its running tasks resolved
	runFailed              = 1 // bad configuration, or the worker could not start or failed
	runUsage               = 2 // bad flags or arguments
	runCredentialsRejected = 3 // the queue rejects the worker's credentials (see worker.ErrCredentialsRejected)
	runShutDown            = 4 // the worker shut itself down (see shutdown.ErrShutDown)
)

const runExitCodes = `
exit codes:
  0  stopped by SIGINT or SIGTERM (or worker-runner's graceful-termination),
     after its running tasks were resolved
  1  bad configuration, or the worker could not start (with a provider
     section: registration with worker-manager failed)
  2  usage error: bad flags or arguments
  3  the queue rejects the worker's credentials: claimWork answered 401 or 403
     three times in a row (fix taskcluster.clientId/accessToken or the client's
     scopes; restarting with the same credentials does not help)
  4  the worker shut itself down, its running tasks resolved: idle for
     shutdown.afterIdleSeconds (shutdown.enabled), a spot termination
     notice (shutdown.spotTermination) or worker-manager's
     shouldWorkerTerminate (provider section, after removeWorker);
     shutdown.command, if set, has run
`

// runWorker runs the worker daemon. The config file is --config FILE or
// the one argument FILE (else $DOCKER_WORKER_CONFIG); giving both, or more
// arguments, is a usage error. With --with-worker-runner it runs under
// Taskcluster worker-runner (see runner.go).
func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("run", "run [flags] [FILE]  (FILE: the worker config, as --config)", stderr)
	flagsUsage := fs.Usage
	fs.Usage = func() {
		flagsUsage()
		fmt.Fprint(fs.Output(), runExitCodes)
	}
	cfgPath := fs.String("config", os.Getenv("DOCKER_WORKER_CONFIG"), "worker config file (YAML or JSON); $DOCKER_WORKER_CONFIG")
	logLevel := fs.String("log-level", "info", "worker log level: debug, info, warn, error")
	profile := fs.String("profile", "", "for a config file in docker-worker's profile form (top-level defaults, production, test): the profile applied over its defaults")
	withRunner := fs.Bool("with-worker-runner", false, "run under Taskcluster worker-runner: its protocol on stdin and stdout, and the key names its generic-worker launcher writes")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	path, err := configArg(fs, *cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "docker-worker run: %v\n", err)
		fs.Usage()
		return runUsage
	}
	var runner *runnerSession
	if *withRunner {
		// Log records and protocol lines share stdout, each written whole.
		stdout = &runnerproto.LineWriter{W: stdout}
		runner = &runnerSession{in: os.Stdin, out: stdout}
	}
	// JSON until the config (which registration may bring) names a format.
	logger := newLogger(stdout, *logLevel, "")
	// With a provider section the worker registers with worker-manager
	// here, for its credentials and its pool's workerConfig.
	cfg, reg, err := wiring.LoadConfig(ctx, path, config.LoadOptions{
		Getenv:       os.Getenv,
		FeatureNames: wiring.FeatureNames(),
		Profile:      *profile,
		RunnerKeys:   *withRunner,
	}, logger)
	if err != nil {
		fmt.Fprintf(stderr, "docker-worker: bad configuration:\n%v\n", err)
		return runFailed
	}
	logger = newLogger(stdout, *logLevel, cfg.Logging.Format)
	warnIgnored(logger, cfg)
	w, closeFn, err := buildWorker(ctx, cfg, logger, reg, nil)
	if err != nil {
		fmt.Fprintf(stderr, "docker-worker: %v\n", err)
		return runFailed
	}
	defer closeFn()
	return runUntilStopped(w, logger, runner)
}

// warnIgnored logs, in one warning, the config keys that have no effect
// in this worker.
func warnIgnored(logger *slog.Logger, cfg *config.Config) {
	keys := cfg.Ignored()
	if len(keys) == 0 {
		return
	}
	reasons := map[string]string{}
	for _, k := range keys {
		reasons[k] = config.NoEffectReason(k)
	}
	logger.Warn("config keys accepted without effect", "keys", keys, "reasons", reasons)
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

// buildWorker wires the worker (see worker/wiring). metricsOut receives
// the WORKER_METRICS lines (nil: stdout).
func buildWorker(ctx context.Context, cfg *config.Config, logger *slog.Logger, reg *wiring.Registration, metricsOut io.Writer) (*wiring.Worker, func(), error) {
	hostname, _ := os.Hostname()
	w, err := wiring.Build(ctx, cfg, wiring.Options{Logger: logger, Version: version, Hostname: hostname, Registration: reg, Stdout: metricsOut})
	if err != nil {
		return nil, nil, err
	}
	return w, func() { w.Close() }, nil
}

// runUntilStopped runs w until it is told to stop: SIGINT stops claiming
// and lets running tasks finish (a second SIGINT aborts them); SIGTERM
// aborts running tasks with worker-shutdown; under worker-runner (runner
// not nil), graceful-termination does one or the other (see stopper). It
// is the command's only signal handler. It returns run's exit code (see
// runExitCode).
func runUntilStopped(w *wiring.Worker, logger *slog.Logger, runner *runnerSession) int {
	st := &stopper{w: w, logger: logger}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for {
			select {
			case s := <-sigs:
				st.signal(s)
			case <-ctx.Done():
				return
			}
		}
	}()
	if runner != nil {
		runner.start(ctx, w, st, logger)
	}
	err := w.Run(context.Background())
	if err != nil && !errors.Is(err, shutdown.ErrShutDown) {
		logger.Error("worker stopped", "error", err)
	}
	// Stopped, or shut down by itself (idle, spot notice): under
	// worker-runner the runner is asked to shut the host down.
	if runner != nil && (err == nil || errors.Is(err, shutdown.ErrShutDown)) {
		runner.shutdown(ctx, logger)
	}
	return runExitCode(err)
}

// stopper is the one way run's worker is told to stop: signals and
// worker-runner's graceful-termination both go through request.
type stopper struct {
	w      interface{ Stop(worker.StopMode) }
	logger *slog.Logger

	mu       sync.Mutex
	graceful bool // a graceful stop was asked for
}

// request logs msg and stops the worker in mode.
func (s *stopper) request(mode worker.StopMode, msg string) {
	s.mu.Lock()
	s.graceful = s.graceful || mode == worker.StopGraceful
	s.mu.Unlock()
	s.logger.Info(msg, "stop", mode.String())
	s.w.Stop(mode)
}

// signal stops for a signal: SIGTERM aborts running tasks, SIGINT lets
// them finish, and a SIGINT after a graceful stop aborts them.
func (s *stopper) signal(sig os.Signal) {
	s.mu.Lock()
	graceful := s.graceful
	s.mu.Unlock()
	switch {
	case sig == syscall.SIGTERM:
		s.request(worker.StopImmediate, "Terminating worker due to SIGTERM")
	case graceful:
		s.request(worker.StopImmediate, "second interrupt: aborting running tasks")
	default:
		s.request(worker.StopGraceful, "interrupt: finishing running tasks, claiming no more")
	}
}

// gracefulTermination stops for worker-runner's graceful-termination:
// with finish-tasks running tasks finish, without it they are aborted
// (worker-shutdown), as SIGTERM does.
func (s *stopper) gracefulTermination(finishTasks bool) {
	if finishTasks {
		s.request(worker.StopGraceful, "worker-runner: graceful termination, finishing running tasks, claiming no more")
		return
	}
	s.request(worker.StopImmediate, "worker-runner: graceful termination without finishing tasks, aborting running tasks")
}

// runExitCode is the exit code of a worker whose Run returned err.
func runExitCode(err error) int {
	switch {
	case err == nil:
		return runStopped
	case errors.Is(err, worker.ErrCredentialsRejected):
		return runCredentialsRejected
	case errors.Is(err, shutdown.ErrShutDown):
		return runShutDown
	}
	return runFailed
}
