// Package cache is the always-on built-in feature serving payload.cache:
// each named cache is a host directory (an instance managed by
// worker/cache) bind-mounted read-write at the path the payload gives.
//
// A task needs, for each cache, scope docker-worker:cache:<name> or
// docker-worker:cache:<name>:<provisionerId>/<workerType>. As in
// docker-worker the task's scopes are first expanded through its roles
// (auth.expandScopes with the worker's credentials), so the check runs in
// Prepare rather than as a [features.ScopeRequirer]. Nothing is created
// on the host before every name and scope has been checked.
//
// An exit code listed in payload.onExitStatus.purgeCaches marks the task's
// instances for removal. As a worker extension the feature loads the
// instances on disk before the first claim, and after claims (at most once
// per interval) asks the purge-cache service which caches of the worker
// pool to purge.
package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/features/internal/scopecheck"
	"go.dockerworker.dev/docker-worker/worker/cache"
	"go.dockerworker.dev/docker-worker/worker/taskerr"
	"go.dockerworker.dev/docker-worker/worker/tasklog"
)

// Name is the feature's name in worker logs.
const Name = "cache"

// ScopePrefix starts the scope a cache needs: ScopePrefix + <name>, or
// with ":<provisionerId>/<workerType>" appended.
const ScopePrefix = "docker-worker:cache:"

// ScopeExpander expands scopes through the roles they assume
// (auth.expandScopes).
type ScopeExpander interface {
	ExpandScopes(ctx context.Context, scopes []string) ([]string, error)
}

// PurgeRequest asks that the instances of a cache created before Before be
// deleted.
type PurgeRequest struct {
	CacheName string
	Before    time.Time
}

// PurgeSource lists the purge requests for a worker pool made since a time
// (purgeCache.purgeRequests).
type PurgeSource interface {
	PurgeRequests(ctx context.Context, workerPoolID string, since time.Time) ([]PurgeRequest, error)
}

// Defaults of [Config].
const (
	// DefaultPurgeInterval is how often purge requests are fetched at most.
	DefaultPurgeInterval = time.Minute
	// purgeTimeout bounds one fetch of purge requests (retries
	// included); the claimed run waits for it.
	purgeTimeout = 30 * time.Second
	// purgeOverlap is how far back each fetch reaches before the previous
	// one, for requests the service recorded late (docker-worker's 5
	// minutes).
	purgeOverlap = 5 * time.Minute
)

// Config is what the feature is built with.
type Config struct {
	// Manager holds the instances.
	Manager *cache.Manager
	// Expander expands the task's scopes when they do not grant a cache
	// as they are; nil checks them as they are.
	Expander ScopeExpander
	// Purges are the purge requests; nil fetches none.
	Purges PurgeSource
	// WorkerPool is <provisionerId>/<workerType>, whose purge requests
	// apply.
	WorkerPool string
	// PurgeInterval is the least time between two fetches of purge
	// requests (0: after every claim).
	PurgeInterval time.Duration
	// Logger is the worker log; nil discards.
	Logger *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Feature serves payload.cache.
type Feature struct {
	cfg Config
	log *slog.Logger

	mu         sync.Mutex // guards the purge-request bookkeeping
	lastFetch  time.Time  // when purge requests were last fetched (zero: never)
	nextSince  time.Time  // the since of the next fetch
	inProgress bool
}

var (
	_ features.Feature   = (*Feature)(nil)
	_ features.AlwaysOn  = (*Feature)(nil)
	_ features.Owner     = (*Feature)(nil)
	_ features.Extension = (*Feature)(nil)
)

// New returns the feature. It has no side effects.
func New(cfg Config) *Feature {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Feature{cfg: cfg, log: log}
}

// Name implements features.Feature.
func (f *Feature) Name() string { return Name }

// Manager is the instance manager the feature uses (nil for a feature
// built without one), for the disk garbage collector.
func (f *Feature) Manager() *cache.Manager { return f.cfg.Manager }

// AlwaysOn implements features.AlwaysOn: the cache section needs no switch.
func (f *Feature) AlwaysOn() bool { return true }

// Owns implements features.Owner.
func (f *Feature) Owns() []string { return []string{"cache"} }

// Init implements features.Extension: the instances on disk are loaded
// (and those a previous process left held are checked) before the first
// claim; purge requests are fetched after claims.
func (f *Feature) Init(_ context.Context, h features.Host) error {
	if f.cfg.Manager == nil {
		return nil
	}
	h.BeforeFirstClaim(func(ctx context.Context) error {
		if err := f.cfg.Manager.Load(ctx); err != nil {
			return fmt.Errorf("volume caches: %w", err)
		}
		return nil
	})
	h.AfterClaim(func(ctx context.Context, _ features.RunRef) { f.AfterClaim(ctx) })
	return nil
}

// AfterClaim fetches the purge requests made since the last fetch, unless
// that was less than the purge interval ago, and marks the instances they
// name; a failure is logged as a warning and otherwise ignored, as in
// docker-worker. It also releases instances a previous process left held
// whose containers are gone.
func (f *Feature) AfterClaim(ctx context.Context) {
	m := f.cfg.Manager
	if err := m.Settle(ctx); err != nil {
		f.log.Warn("cache volume removal failed", "error", err)
	}
	if f.cfg.Purges == nil {
		return
	}
	now := f.cfg.Now()
	f.mu.Lock()
	if f.inProgress || (!f.lastFetch.IsZero() && now.Sub(f.lastFetch) < f.cfg.PurgeInterval) {
		f.mu.Unlock()
		return
	}
	since := f.nextSince
	if since.IsZero() {
		// The first fetch reaches back to the oldest instance: requests
		// made while no worker ran still apply to it.
		since = now
		for _, i := range m.Instances() {
			if i.Created.Before(since) {
				since = i.Created
			}
		}
		since = since.Add(-purgeOverlap)
	}
	f.inProgress = true
	f.mu.Unlock()

	// The claimed run waits for this call: bound it.
	pctx, cancel := context.WithTimeout(ctx, purgeTimeout)
	reqs, err := f.cfg.Purges.PurgeRequests(pctx, f.cfg.WorkerPool, since)
	cancel()

	f.mu.Lock()
	f.inProgress = false
	if err == nil {
		f.lastFetch, f.nextSince = now, now.Add(-purgeOverlap)
	}
	f.mu.Unlock()
	if err != nil {
		f.log.Warn("could not fetch purge requests", "workerPool", f.cfg.WorkerPool, "error", err)
		return
	}
	for _, r := range reqs {
		n, err := m.PurgeBefore(ctx, r.CacheName, r.Before)
		if err != nil {
			f.log.Warn("cache purge failed", "cache", r.CacheName, "error", err)
		}
		if n > 0 {
			f.log.Info("cache purge requested", "cache", r.CacheName, "before", r.Before, "instances", n)
		}
	}
}

// NewTask implements features.Feature.
func (f *Feature) NewTask(t features.Task) (features.TaskFeature, error) {
	return &task{f: f, t: t}, nil
}

type task struct {
	f *Feature
	t features.Task

	mu     sync.Mutex
	leases []*cache.Lease
}

var (
	_ features.Preparer = (*task)(nil)
	_ features.Exiter   = (*task)(nil)
	_ features.Cleaner  = (*task)(nil)
)

// insufficientScopes is docker-worker's first line when a cache scope is
// missing.
const insufficientScopes = "Insufficient scopes to attach cache volumes."

// Prepare implements features.Preparer: it checks every name, mount path
// and scope, then acquires one instance per cache and mounts it.
func (k *task) Prepare(ctx context.Context, _ *features.PrepareRequest, resp *features.PrepareResponse) error {
	p := k.t.Payload()
	if p == nil || len(p.Cache) == 0 {
		return nil
	}
	names := slices.Sorted(maps.Keys(p.Cache))
	if err := checkPayload(names, p.Cache); err != nil {
		return err
	}
	if err := k.checkScopes(ctx, names); err != nil {
		return err
	}
	if k.f.cfg.Manager == nil {
		return taskerr.InternalError(errors.New("this worker has no volume cache directory"))
	}
	w := k.t.Worker()
	h := cache.Holder{TaskID: k.t.TaskID(), RunID: k.t.RunID(), WorkerID: w.WorkerID}
	for _, name := range names {
		l, err := k.f.cfg.Manager.Acquire(ctx, name, h)
		if err != nil {
			return taskerr.InternalError(fmt.Errorf("cache %q: %w", name, err))
		}
		k.mu.Lock()
		k.leases = append(k.leases, l)
		k.mu.Unlock()
		resp.Mounts = append(resp.Mounts, features.Mount{Source: l.Path, Target: p.Cache[name]})
		resp.LogLines = append(resp.LogLines, fmt.Sprintf("using cache %q -> %s", name, p.Cache[name]))
		resp.Caches = append(resp.Caches, features.CacheUse{Name: name, Hit: l.Hit})
	}
	return nil
}

// checkPayload refuses invalid names and mount paths before anything is
// created.
func checkPayload(names []string, mounts map[string]string) error {
	var errs []error
	targets := map[string]string{}
	for _, name := range names {
		if err := cache.ValidName(name); err != nil {
			errs = append(errs, err)
			continue
		}
		target := mounts[name]
		clean := path.Clean(target)
		switch {
		case !path.IsAbs(target):
			errs = append(errs, fmt.Errorf("cache %q: the mount point %q is not an absolute path", name, target))
		case strings.Contains(target, ":"):
			errs = append(errs, fmt.Errorf("cache %q: the mount point %q contains a colon", name, target))
		case targets[clean] != "":
			errs = append(errs, fmt.Errorf("caches %q and %q are both mounted at %s", targets[clean], name, clean))
		default:
			targets[clean] = name
		}
	}
	return errors.Join(errs...)
}

// checkScopes requires, for every cache, the plain or the per-pool scope,
// in the task's scopes or in their expansion through roles.
func (k *task) checkScopes(ctx context.Context, names []string) error {
	return scopecheck.Check(ctx, k.f.cfg.Expander, k.t.Scopes(), scopecheck.Requirement{
		Prefix: ScopePrefix, Pool: k.t.Worker().Pool(), Names: names,
		Insufficient: insufficientScopes, What: "cache", Field: "payload.cache",
	})
}

// Exited implements features.Exiter: an exit code listed in
// onExitStatus.purgeCaches marks the task's instances for removal.
func (k *task) Exited(_ context.Context, req *features.ExitedRequest) error {
	p := k.t.Payload()
	if p == nil || p.OnExitStatus == nil || !slices.Contains(p.OnExitStatus.PurgeCaches, req.ExitCode) {
		return nil
	}
	k.mu.Lock()
	leases := slices.Clone(k.leases)
	k.mu.Unlock()
	var errs []error
	for _, l := range leases {
		errs = append(errs, l.Purge(fmt.Sprintf("exit code %d is in onExitStatus.purgeCaches", req.ExitCode)))
	}
	if len(leases) > 0 {
		msg := fmt.Sprintf("Exit code %d is in onExitStatus.purgeCaches: removing cache %s once the task is over.",
			req.ExitCode, strings.Join(leaseNames(leases), ", "))
		io.WriteString(k.t.Log(), tasklog.InfoLine(k.f.cfg.Now(), msg))
	}
	if err := errors.Join(errs...); err != nil {
		k.t.Logger().Warn("marking caches for removal failed", "error", err)
	}
	return nil
}

func leaseNames(ls []*cache.Lease) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = fmt.Sprintf("%q", l.Name)
	}
	return out
}

// Cleanup implements features.Cleaner: every instance is released (and
// deleted when marked). Idempotent.
func (k *task) Cleanup(ctx context.Context) error {
	k.mu.Lock()
	leases := k.leases
	k.leases = nil
	k.mu.Unlock()
	var errs []error
	for _, l := range leases {
		errs = append(errs, l.Release(ctx))
	}
	return errors.Join(errs...)
}
