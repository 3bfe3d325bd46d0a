// Package dockerhealth holds the worker's claims while the Docker daemon
// does not answer. Before every claim a [Checker] pings the daemon; while
// the ping fails it allows no task, and raises the operator alert
// `[alert-operator] docker daemon unreachable` when the daemon stops
// answering and again at most once an alert interval while it stays down.
// Once a ping succeeds again it logs that claiming resumes and calls the
// configured recovery (the wiring removes the task containers that runs
// cut off by the fault could not remove). Used by worker/wiring, which
// adapts it to the features.Extension hooks.
package dockerhealth

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Reason is the checker's reason for claiming nothing (the alert carries
// the error).
const Reason = "docker daemon unreachable"

// Pinger is what the checker needs of the Docker client.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Config configures a Checker.
type Config struct {
	// AlertInterval is the least time between two alerts while the daemon
	// stays unreachable (0: one minute).
	AlertInterval time.Duration
	// PingTimeout bounds each ping (0: five seconds): a daemon that does
	// not answer in time counts as unreachable.
	PingTimeout time.Duration
	// Recovered, when set, is called (before the claim) each time the
	// daemon answers again after failing.
	Recovered func(ctx context.Context)
	Logger    *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Checker is the before-claim check of the daemon. It is safe for
// concurrent use.
type Checker struct {
	cfg    Config
	docker Pinger

	mu        sync.Mutex
	down      bool      // the last ping failed
	since     time.Time // when the daemon stopped answering
	lastAlert time.Time
}

// New returns a checker pinging d.
func New(cfg Config, d Pinger) *Checker {
	if cfg.AlertInterval <= 0 {
		cfg.AlertInterval = time.Minute
	}
	if cfg.PingTimeout <= 0 {
		cfg.PingTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Checker{cfg: cfg, docker: d}
}

// Allow is the before-claim hook: want while the daemon answers, none
// (with the reason) while it does not.
func (c *Checker) Allow(ctx context.Context, want int) (int, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pctx, cancel := context.WithTimeout(ctx, c.cfg.PingTimeout)
	err := c.docker.Ping(pctx)
	cancel()
	now := c.cfg.Now()
	if err != nil {
		if ctx.Err() != nil {
			// The worker is stopping: not the daemon's fault.
			return 0, "the worker is stopping"
		}
		if !c.down {
			c.down, c.since = true, now
			c.lastAlert = time.Time{}
		}
		if c.lastAlert.IsZero() || now.Sub(c.lastAlert) >= c.cfg.AlertInterval {
			c.lastAlert = now
			c.cfg.Logger.Error("[alert-operator] docker daemon unreachable", "error", err,
				"down", now.Sub(c.since).Round(time.Millisecond).String(), "effect", "claiming no tasks until it answers")
		}
		return 0, Reason
	}
	if c.down {
		c.down = false
		c.cfg.Logger.Info("docker daemon answers again; claiming resumes", "down", now.Sub(c.since).Round(time.Millisecond).String())
		if c.cfg.Recovered != nil {
			c.cfg.Recovered(ctx)
		}
	}
	return want, ""
}
