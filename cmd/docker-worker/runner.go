package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"go.dockerworker.dev/docker-worker/worker/runnerproto"
	"go.dockerworker.dev/docker-worker/worker/tc"
	"go.dockerworker.dev/docker-worker/worker/wiring"
)

// runnerShutdownWait bounds how long a stopping worker waits for
// worker-runner's welcome before it exits without asking for the host's
// shutdown.
const runnerShutdownWait = 30 * time.Second

// runnerSession is run's side of worker-runner's protocol: the runner's
// lines come on in, protocol lines go to out beside the log records.
type runnerSession struct {
	in   io.Reader
	out  io.Writer
	conn *runnerproto.Conn
}

// start answers the runner and acts on its messages until ctx ends:
// graceful-termination stops the worker through st, new-credentials
// replaces the worker's own credentials for every later call.
func (r *runnerSession) start(ctx context.Context, w *wiring.Worker, st *stopper, logger *slog.Logger) {
	logger = logger.With("component", "worker-runner")
	r.conn = runnerproto.New(r.in, r.out, runnerproto.Handlers{
		GracefulTermination: st.gracefulTermination,
		NewCredentials: func(c runnerproto.Credentials) {
			w.Credentials.Set(tc.Credentials{ClientID: c.ClientID, AccessToken: c.AccessToken, Certificate: c.Certificate})
		},
	}, true, logger)
	go func() {
		err := r.conn.Run(ctx)
		switch {
		case ctx.Err() != nil:
		case err != nil:
			logger.Error("reading from worker-runner failed; its messages are no longer heard", "error", err)
		default:
			logger.Warn("worker-runner closed the worker's stdin; its messages are no longer heard")
		}
	}()
}

// shutdown asks worker-runner to shut the host down (it removes the
// worker from worker-manager, else powers the machine off), as
// docker-worker did whenever it stopped under the runner.
func (r *runnerSession) shutdown(ctx context.Context, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, runnerShutdownWait)
	defer cancel()
	err := r.conn.Shutdown(ctx)
	switch {
	case errors.Is(err, runnerproto.ErrNotNegotiated):
		logger.Info("worker-runner did not agree to the shutdown message; exiting without it")
	case err != nil:
		logger.Error("cannot ask worker-runner to shut the host down", "error", err)
	default:
		logger.Info("asked worker-runner to shut the host down")
	}
}

// legacyHostArgs turns docker-worker's own command line, as worker-runner's
// docker-worker launcher runs it ("--host worker-runner production", the
// config file in $DOCKER_WORKER_CONFIG), into run's arguments. ok is
// false when args do not start with --host; err is a usage error.
func legacyHostArgs(args []string) (runArgs []string, ok bool, err error) {
	if len(args) == 0 {
		return nil, false, nil
	}
	var host string
	var rest []string
	if v, ok := strings.CutPrefix(args[0], "--host="); ok {
		host, rest = v, args[1:]
	} else if args[0] == "--host" {
		if len(args) < 2 {
			return nil, true, errors.New("--host needs a value")
		}
		host, rest = args[1], args[2:]
	} else {
		return nil, false, nil
	}
	if host != "worker-runner" {
		return nil, true, fmt.Errorf("--host %s: only worker-runner is supported (run the worker with 'docker-worker run')", host)
	}
	if len(rest) > 1 {
		return nil, true, fmt.Errorf("--host worker-runner takes one profile name, got %v", rest)
	}
	runArgs = []string{"--with-worker-runner"}
	if len(rest) == 1 {
		runArgs = append(runArgs, "--profile", rest[0])
	}
	return runArgs, true, nil
}
