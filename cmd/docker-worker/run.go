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
	"syscall"

	"go.dockerworker.dev/docker-worker/worker"
	"go.dockerworker.dev/docker-worker/worker/config"
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
  0  stopped by SIGINT or SIGTERM, after its running tasks were resolved
  1  bad configuration, or the worker could not start
  2  usage error: bad flags or arguments
  3  the queue rejects the worker's credentials: claimWork answered 401 or 403
     three times in a row (fix taskcluster.clientId/accessToken or the client's
     scopes; restarting with the same credentials does not help)
  4  the worker shut itself down, its running tasks resolved: idle for
     shutdown.afterIdleSeconds (shutdown.enabled) or a spot termination
     notice (shutdown.spotTermination); shutdown.command, if set, has run
`

// runWorker runs the worker daemon. The config file is --config FILE or
// the one argument FILE (else $DOCKER_WORKER_CONFIG); giving both, or more
// arguments, is a usage error.
func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("run", "run [flags] [FILE]  (FILE: the worker config, as --config)", stderr)
	flagsUsage := fs.Usage
	fs.Usage = func() {
		flagsUsage()
		fmt.Fprint(fs.Output(), runExitCodes)
	}
	cfgPath := fs.String("config", os.Getenv("DOCKER_WORKER_CONFIG"), "worker config file (YAML or JSON); $DOCKER_WORKER_CONFIG")
	logLevel := fs.String("log-level", "info", "worker log level: debug, info, warn, error")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	path, err := configArg(fs, *cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "docker-worker run: %v\n", err)
		fs.Usage()
		return runUsage
	}
	cfg, err := config.Load(path, os.Getenv, wiring.FeatureNames()...)
	if err != nil {
		fmt.Fprintf(stderr, "docker-worker: bad configuration:\n%v\n", err)
		return runFailed
	}
	logger := newLogger(stdout, *logLevel)
	w, closeFn, err := buildWorker(ctx, cfg, logger)
	if err != nil {
		fmt.Fprintf(stderr, "docker-worker: %v\n", err)
		return runFailed
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

// buildWorker wires the worker (see worker/wiring).
func buildWorker(ctx context.Context, cfg *config.Config, logger *slog.Logger) (*wiring.Worker, func(), error) {
	hostname, _ := os.Hostname()
	w, err := wiring.Build(ctx, cfg, wiring.Options{Logger: logger, Version: version, Hostname: hostname})
	if err != nil {
		return nil, nil, err
	}
	return w, func() { w.Close() }, nil
}

// runUntilSignalled runs w until it is told to stop: SIGINT stops claiming
// and lets running tasks finish (a second SIGINT aborts them); SIGTERM aborts
// running tasks with worker-shutdown. It is the command's only signal
// handler. It returns run's exit code (see runExitCode).
func runUntilSignalled(w *wiring.Worker, logger *slog.Logger) int {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	done := make(chan struct{})
	defer close(done)
	go func() {
		graceful := false
		for {
			var s os.Signal
			select {
			case s = <-sigs:
			case <-done:
				return
			}
			switch {
			case s == syscall.SIGTERM:
				logger.Info("Terminating worker due to SIGTERM")
				w.Stop(worker.StopImmediate)
			case graceful:
				logger.Info("second interrupt: aborting running tasks")
				w.Stop(worker.StopImmediate)
			default:
				logger.Info("interrupt: finishing running tasks, claiming no more")
				graceful = true
				w.Stop(worker.StopGraceful)
			}
		}
	}()
	err := w.Run(context.Background())
	if err != nil && !errors.Is(err, shutdown.ErrShutDown) {
		logger.Error("worker stopped", "error", err)
	}
	return runExitCode(err)
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
