package wiring

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/worker"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/shutdown"
	"go.dockerworker.dev/docker-worker/worker/spot"
)

// selfStop is the worker stopping on its own: the idle timer and the spot
// termination check ask it to stop the worker, and once the worker's Run
// has returned it performs the shutdown action.
type selfStop struct {
	logger *slog.Logger
	action shutdown.Action
	stop   func(worker.StopMode)
	// emit reports a worker event (a spot notice) to the observers.
	emit func(features.WorkerEvent)
	// ctx bounds the background checks (the spot poller); cancel ends
	// them once Run returned.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu  sync.Mutex
	why shutdown.Reason
}

// selfStopExtensions returns the extensions of shutdown.* that cfg turns
// on, and keeps what Run needs to shut down after them.
func (w *Worker) selfStopExtensions(cfg *config.Config, opts Options) []features.Extension {
	action := opts.ShutdownAction
	switch {
	case action != nil:
	case len(cfg.Shutdown.Command) > 0:
		action = shutdown.Command{Argv: cfg.Shutdown.Command, Logger: opts.Logger.With("component", "shutdown")}
	default:
		action = shutdown.Exit{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &selfStop{
		logger: opts.Logger,
		action: action,
		stop:   func(m worker.StopMode) { w.Worker.Stop(m) },
		emit:   func(ev features.WorkerEvent) { w.Worker.Emit(ev) },
		ctx:    ctx,
		cancel: cancel,
	}
	w.self = s
	w.closers = append(w.closers, func() error { s.end(); return nil })
	var exts []features.Extension
	if cfg.Shutdown.Enabled {
		exts = append(exts, &idleExtension{
			self:  s,
			after: cfg.Shutdown.AfterIdleSeconds,
			timer: shutdown.NewIdleTimer(cfg.AfterIdle(), nil, opts.Logger),
		})
	}
	if cfg.Shutdown.SpotTermination {
		exts = append(exts, &spotExtension{
			self: s,
			watcher: spot.New(spot.Config{
				Endpoint: cfg.Shutdown.MetadataEndpoint,
				Interval: cfg.NodeTerminationPoll(),
				Logger:   opts.Logger.With("component", "spot"),
			}),
		})
	}
	return exts
}

// request stops the worker for why; the first reason is the one kept.
func (s *selfStop) request(mode worker.StopMode, why shutdown.Reason) {
	s.mu.Lock()
	if s.why == "" {
		s.why = why
	}
	s.mu.Unlock()
	s.stop(mode)
}

// reason is why the worker stopped itself ("" when it did not).
func (s *selfStop) reason() shutdown.Reason {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.why
}

// background runs fn until the worker's Run returns.
func (s *selfStop) background(fn func(ctx context.Context)) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn(s.ctx)
	}()
}

// end stops the background checks and waits for them.
func (s *selfStop) end() {
	s.cancel()
	s.wg.Wait()
}

// Run runs the worker (see [worker.Worker.Run]). When the worker stopped
// itself (shutdown.enabled and idle for shutdown.afterIdleSeconds, or a
// spot termination notice with shutdown.spotTermination), Run performs the
// shutdown action once the running tasks are resolved (Options.ShutdownAction,
// else shutdown.command, else nothing) and returns an error wrapping
// [shutdown.ErrShutDown], or the action's error.
func (w *Worker) Run(ctx context.Context) error {
	err := w.Worker.Run(ctx)
	if w.self == nil {
		return err
	}
	w.self.end()
	why := w.self.reason()
	if err != nil || why == "" {
		return err
	}
	w.self.logger.Info("shutdown", "reason", why)
	if err := w.self.action.Shutdown(context.WithoutCancel(ctx), why); err != nil {
		return fmt.Errorf("shut down (%s): %w", why, err)
	}
	return fmt.Errorf("%w: %s", shutdown.ErrShutDown, why)
}

// idleExtension stops the worker, gracefully, when it has been idle for
// shutdown.afterIdleSeconds. It looks only between claims (before each
// claimWork call): a claim in progress is never cut short by it.
type idleExtension struct {
	self  *selfStop
	after int
	timer *shutdown.IdleTimer
}

var _ features.Extension = (*idleExtension)(nil)

func (e *idleExtension) Init(_ context.Context, h features.Host) error {
	runs := h.Runs()
	h.AfterClaim(func(context.Context, features.RunRef) { e.timer.Working() })
	h.BeforeClaim(func(_ context.Context, want int) (int, string) {
		if !e.timer.Check(len(runs.List())) {
			return want, ""
		}
		e.self.request(worker.StopGraceful, shutdown.Idle)
		return 0, fmt.Sprintf("shutting down: idle for shutdown.afterIdleSeconds (%d)", e.after)
	})
	return nil
}

// spotExtension stops the worker at once on an EC2 spot interruption
// notice: it claims nothing more and aborts its running tasks
// worker-shutdown (their logs uploaded). It checks before the first claim,
// then every shutdown.nodeTerminationPoll, and claims nothing until the
// metadata service has answered once, so a worker started on an instance
// already under notice never claims.
type spotExtension struct {
	self    *selfStop
	watcher *spot.Watcher
}

var _ features.Extension = (*spotExtension)(nil)

func (e *spotExtension) Init(_ context.Context, h features.Host) error {
	h.BeforeFirstClaim(func(ctx context.Context) error {
		n, err := e.watcher.Check(ctx)
		switch {
		case n != nil:
			e.noticed(*n)
			return nil
		case err != nil:
			e.self.logger.Warn("the instance metadata service does not answer the spot termination check: claiming nothing until it does",
				"error", err)
		}
		e.self.background(func(ctx context.Context) { e.watcher.Run(ctx, e.noticed) })
		return nil
	})
	h.BeforeClaim(func(_ context.Context, want int) (int, string) {
		answered, n := e.watcher.State()
		switch {
		case n != nil:
			return 0, "the instance is to be interrupted (spot termination notice)"
		case !answered:
			return 0, "waiting for the instance metadata service to answer the spot termination check"
		}
		return want, ""
	})
	return nil
}

func (e *spotExtension) noticed(n spot.Notice) {
	e.self.logger.Warn("spot termination notice: aborting running tasks, claiming no more",
		"path", n.Path, "action", n.Action, "time", n.Time, "notice", n.Body)
	if e.self.emit != nil {
		e.self.emit(features.WorkerEvent{Kind: features.SpotNotice, Notice: features.Notice{Action: n.Action, Time: n.Time}})
	}
	e.self.request(worker.StopImmediate, shutdown.TerminationNotice)
}
