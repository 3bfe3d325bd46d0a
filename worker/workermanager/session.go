package workermanager

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"go.dockerworker.dev/docker-worker/worker/shutdown"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// DefaultCheckInterval is how often, at most, shouldWorkerTerminate is
// asked.
const DefaultCheckInterval = time.Minute

// minRetry and maxRetry bound the pause after a failed reregisterWorker.
const (
	minRetry = time.Second
	maxRetry = 30 * time.Second
)

// SessionConfig configures a [Session].
type SessionConfig struct {
	Identity Identity
	// First is what registerWorker returned.
	First *Registration
	// Client is a client with the worker's current credentials; SetCredentials
	// makes new ones current (the wiring's WorkerCredentials).
	Client         func() *tc.Client
	SetCredentials func(tc.Credentials)
	// CheckInterval is how often, at most, ShouldTerminate asks (0:
	// DefaultCheckInterval).
	CheckInterval time.Duration
	Logger        *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Session is a registered worker: it renews the credentials, answers
// whether the worker should terminate and removes the worker.
type Session struct {
	cfg SessionConfig

	mu        sync.Mutex
	secret    string
	expires   time.Time
	lastCheck time.Time
}

// NewSession returns the session of a registration.
func NewSession(cfg SessionConfig) *Session {
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = DefaultCheckInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Session{cfg: cfg, secret: cfg.First.Secret, expires: cfg.First.Expires}
}

// Identity is the registered worker.
func (s *Session) Identity() Identity { return s.cfg.Identity }

// Expires is when the current credentials expire.
func (s *Session) Expires() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.expires
}

// renewAt is when credentials that expire at exp, seen at now, are
// renewed: once two thirds of their remaining time has passed, so that a
// renewal that fails has the last third to be retried.
func renewAt(now, exp time.Time) time.Time {
	return now.Add(exp.Sub(now) * 2 / 3)
}

// RunRenewal calls reregisterWorker well before the credentials expire and
// makes the new ones current, until ctx ends. A running claim is not
// affected: calls under way finish with the credentials they started
// with, and runs hold their own temporary credentials. A failed call is
// retried with a growing pause (logged), for as long as ctx lasts.
func (s *Session) RunRenewal(ctx context.Context) {
	retry := minRetry
	next := renewAt(s.cfg.Now(), s.Expires())
	for {
		t := time.NewTimer(next.Sub(s.cfg.Now()))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if err := s.Renew(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.cfg.Logger.Error("credential renewal failed", "error", err, "expires", s.Expires(), "retryIn", retry)
			next = s.cfg.Now().Add(retry)
			retry = min(retry*2, maxRetry)
			continue
		}
		retry = minRetry
		next = renewAt(s.cfg.Now(), s.Expires())
	}
}

// Renew calls reregisterWorker once and makes the new credentials current.
func (s *Session) Renew(ctx context.Context) error {
	s.mu.Lock()
	secret := s.secret
	s.mu.Unlock()
	r, err := Reregister(ctx, s.cfg.Client(), s.cfg.Identity, secret)
	if err != nil {
		return err
	}
	s.cfg.SetCredentials(r.Credentials)
	s.mu.Lock()
	s.secret, s.expires = r.Secret, r.Expires
	s.mu.Unlock()
	s.cfg.Logger.Info("credentials renewed", "clientId", r.Credentials.ClientID, "expires", r.Expires)
	return nil
}

// ShouldTerminate asks shouldWorkerTerminate, at most once per
// CheckInterval: between two asks it answers false at once. A failed call
// is logged and answers false (the worker goes on).
func (s *Session) ShouldTerminate(ctx context.Context) (bool, string) {
	now := s.cfg.Now()
	s.mu.Lock()
	due := s.lastCheck.IsZero() || now.Sub(s.lastCheck) >= s.cfg.CheckInterval
	if due {
		s.lastCheck = now
	}
	s.mu.Unlock()
	if !due {
		return false, ""
	}
	terminate, reason, err := ShouldTerminate(ctx, s.cfg.Client(), s.cfg.Identity)
	if err != nil {
		s.cfg.Logger.Warn("shouldWorkerTerminate failed: going on", "error", err)
		return false, ""
	}
	return terminate, reason
}

// Remove calls removeWorker with the current credentials.
func (s *Session) Remove(ctx context.Context) error {
	return Remove(ctx, s.cfg.Client(), s.cfg.Identity)
}

// RemoveAction is a [shutdown.Action]: removeWorker, then Then (when not
// nil). A failed removeWorker is logged and Then still runs: the host is
// going away either way, and worker-manager notices a worker that stopped
// asking for credentials.
type RemoveAction struct {
	Session *Session
	Then    shutdown.Action
	Logger  *slog.Logger
}

// Shutdown implements shutdown.Action.
func (a RemoveAction) Shutdown(ctx context.Context, why shutdown.Reason) error {
	id := a.Session.Identity()
	if err := a.Session.Remove(ctx); err != nil {
		if a.Logger != nil {
			a.Logger.Error("removeWorker failed", "error", err)
		}
	} else if a.Logger != nil {
		a.Logger.Info("worker removed from worker-manager", "workerPoolId", id.WorkerPoolID, "workerGroup", id.WorkerGroup, "workerId", id.WorkerID)
	}
	if a.Then == nil {
		return nil
	}
	return a.Then.Shutdown(ctx, why)
}
