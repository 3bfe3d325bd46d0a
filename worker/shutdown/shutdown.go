// Package shutdown is the worker stopping on its own: the idle timer of
// docker-worker's shutdown.enabled / shutdown.afterIdleSeconds, the reasons
// a worker stops itself (idle, an interruption notice of its instance) and
// what shutting down means once it has stopped (an [Action]: exit with a
// code of its own, run a command such as `shutdown -h now`, or tell a
// supervisor such as worker-runner).
package shutdown

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Reason is why the worker stopped itself.
type Reason string

const (
	// Idle: the worker held no run for shutdown.afterIdleSeconds.
	Idle Reason = "idle"
	// TerminationNotice: the instance is about to be interrupted (an EC2
	// spot notice).
	TerminationNotice Reason = "termination-notice"
)

// ErrShutDown is wrapped by the error a worker that stopped itself
// returns once its tasks are resolved and its Action succeeded; the
// process then exits with its own code (docker-worker run: 4).
var ErrShutDown = errors.New("the worker shut itself down")

// Action is what shutting down means, done once, after the worker stopped
// itself and resolved its tasks. Implementations: [Exit], [Command]; a
// supervisor protocol (worker-runner's shutdown message) implements it
// too. An error is the process's failure.
type Action interface {
	Shutdown(ctx context.Context, why Reason) error
}

// Exit does nothing more: the process exits (with the code of
// [ErrShutDown]) and whatever supervises it decides what comes next.
type Exit struct{}

// Shutdown implements Action.
func (Exit) Shutdown(context.Context, Reason) error { return nil }

// CommandTimeout bounds a [Command].
const CommandTimeout = 2 * time.Minute

// Command runs a program (no shell), e.g. shutdown -h now; its output is
// logged.
type Command struct {
	Argv   []string
	Logger *slog.Logger
}

// Shutdown implements Action: it runs the command with the reason in
// $DOCKER_WORKER_SHUTDOWN_REASON; a non-zero exit is an error.
func (c Command) Shutdown(ctx context.Context, why Reason) error {
	if len(c.Argv) == 0 {
		return errors.New("shutdown command: empty")
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(ctx, CommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Argv[0], c.Argv[1:]...)
	cmd.Env = append(cmd.Environ(), "DOCKER_WORKER_SHUTDOWN_REASON="+string(why))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	log.Info("running the shutdown command", "command", strings.Join(c.Argv, " "), "reason", why)
	err := cmd.Run()
	if s := strings.TrimSpace(out.String()); s != "" {
		log.Info("shutdown command output", "output", s)
	}
	if err != nil {
		return fmt.Errorf("shutdown command %q: %w", strings.Join(c.Argv, " "), err)
	}
	return nil
}

// IdleTimer is docker-worker's idle shutdown timer, asked between claims
// only: the worker counts as working at start-up, becomes idle at the
// first check that finds no run in progress ("worker idle"), working
// again when it claims ("worker working"), and has been idle long enough
// when a check finds it idle for After.
type IdleTimer struct {
	after time.Duration
	now   func() time.Time
	log   *slog.Logger

	mu    sync.Mutex
	idle  bool
	since time.Time
}

// NewIdleTimer returns a timer that expires after the given idle time
// (now nil: time.Now).
func NewIdleTimer(after time.Duration, now func() time.Time, logger *slog.Logger) *IdleTimer {
	if now == nil {
		now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &IdleTimer{after: after, now: now, log: logger}
}

// Check is called between claims with the number of runs in progress. It
// reports whether the worker has now been idle for the whole idle time.
func (t *IdleTimer) Check(running int) (expired bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if running > 0 {
		t.working()
		return false
	}
	now := t.now()
	if !t.idle {
		t.idle, t.since = true, now
		t.log.Info("worker idle", "afterIdleSeconds", int(t.after/time.Second))
		return false
	}
	return now.Sub(t.since) >= t.after
}

// Working is called when the worker claims a run: an idle worker becomes
// working and its timer is cancelled.
func (t *IdleTimer) Working() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.working()
}

func (t *IdleTimer) working() {
	if t.idle {
		t.idle = false
		t.log.Info("worker working", "idleSeconds", int(t.now().Sub(t.since)/time.Second))
	}
}
