package wiring

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	cachefeature "go.dockerworker.dev/docker-worker/features/cache"
	"go.dockerworker.dev/docker-worker/features/image"
	"go.dockerworker.dev/docker-worker/worker/cache"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/diskgc"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// cacheFeature builds the volume-cache feature: instances under
// cache.volumeCachePath; an instance a previous process left held is
// handed out again once no container of its run runs; task scopes are
// expanded and purge requests fetched with the worker's credentials. dc is
// nil for the inert feature list.
//
// d is the Docker client featureList gets (possibly wrapped to record
// images); the crash check lists containers with it.
func cacheFeature(cfg *config.Config, opts Options, d image.Docker) *cachefeature.Feature {
	logger := opts.Logger.With("feature", cachefeature.Name)
	var alive cache.AliveFunc
	if l := listerOf(d); l != nil {
		alive = runContainerRuns(l)
	}
	tcs := taskclusterCalls{
		worker:    opts.Credentials,
		anonymous: tc.New(tc.Config{RootURL: cfg.RootURL}),
	}
	return cachefeature.New(cachefeature.Config{
		Manager: cache.New(cache.Config{
			Dir:    cfg.Cache.VolumeCachePath,
			Alive:  alive,
			Logger: logger,
		}),
		Expander:      tcs,
		Purges:        tcs,
		WorkerPool:    cfg.ProvisionerID + "/" + cfg.WorkerType,
		PurgeInterval: time.Duration(cfg.Cache.PurgeRequestInterval) * time.Millisecond,
		Logger:        logger,
	})
}

// taskclusterCalls are the auth and purge-cache calls of the cache
// feature: made with the worker's current credentials, and again without
// any when those are refused (403), as the worker polls task status;
// public deployments' anonymous roles grant both calls.
type taskclusterCalls struct {
	worker    *WorkerCredentials
	anonymous *tc.Client
}

var (
	_ cachefeature.ScopeExpander = taskclusterCalls{}
	_ cachefeature.PurgeSource   = taskclusterCalls{}
)

// ExpandScopes implements cachefeature.ScopeExpander (auth.expandScopes).
func (c taskclusterCalls) ExpandScopes(ctx context.Context, scopes []string) ([]string, error) {
	out, err := c.worker.Client().ExpandScopes(ctx, scopes)
	if tc.StatusCode(err) == http.StatusForbidden {
		out, err = c.anonymous.ExpandScopes(ctx, scopes)
	}
	return out, err
}

// PurgeRequests implements cachefeature.PurgeSource
// (purgeCache.purgeRequests).
func (c taskclusterCalls) PurgeRequests(ctx context.Context, workerPoolID string, since time.Time) ([]cachefeature.PurgeRequest, error) {
	reqs, err := c.worker.Client().PurgeRequests(ctx, workerPoolID, since)
	if tc.StatusCode(err) == http.StatusForbidden {
		reqs, err = c.anonymous.PurgeRequests(ctx, workerPoolID, since)
	}
	if err != nil {
		return nil, err
	}
	out := make([]cachefeature.PurgeRequest, len(reqs))
	for i, r := range reqs {
		out[i] = cachefeature.PurgeRequest{CacheName: r.CacheName, Before: r.Before}
	}
	return out, nil
}

// containerLister is the part of the Docker client the crash check uses.
type containerLister interface {
	ListContainers(ctx context.Context, labels map[string]string) ([]docker.ContainerState, error)
}

// listerOf finds the container listing of the Docker client behind d (nil
// when there is none, as for the inert feature list).
func listerOf(d image.Docker) containerLister {
	if t, ok := d.(trackedImages); ok {
		d = t.Docker
	}
	if d == nil {
		return nil
	}
	if c, ok := d.(*docker.Client); ok && c == nil {
		return nil
	}
	l, _ := d.(containerLister)
	return l
}

// runContainerRuns reports whether a container the runner labelled with
// the run h still runs (a stopped one no longer writes to its caches).
func runContainerRuns(dc containerLister) cache.AliveFunc {
	return func(ctx context.Context, h cache.Holder) (bool, error) {
		cs, err := dc.ListContainers(ctx, map[string]string{
			diskgc.TaskLabel:   h.TaskID,
			diskgc.RunLabel:    strconv.Itoa(h.RunID),
			diskgc.WorkerLabel: h.WorkerID,
		})
		if err != nil {
			return false, err
		}
		return slices.ContainsFunc(cs, docker.ContainerState.Running), nil
	}
}

// cacheSources offers the disk garbage collector the free cache instances
// of the cache feature in feats.
func cacheSources(feats []features.Feature) []diskgc.Source {
	var out []diskgc.Source
	for _, f := range feats {
		if cf, ok := f.(*cachefeature.Feature); ok && cf.Manager() != nil {
			out = append(out, cacheSource{cf.Manager()})
		}
	}
	return out
}

// cacheSource is a diskgc.Source of the instances nobody holds.
type cacheSource struct{ m *cache.Manager }

func (s cacheSource) Candidates(context.Context) ([]diskgc.Candidate, error) {
	var out []diskgc.Candidate
	for _, i := range s.m.Instances() {
		if i.Holder != nil {
			continue
		}
		name, id := i.Name, i.ID
		out = append(out, diskgc.Candidate{
			What:     "cache volume " + name + "/" + id,
			LastUsed: i.LastUsed,
			Remove: func(ctx context.Context) error {
				_, err := s.m.Remove(ctx, name, id)
				return err
			},
		})
	}
	return out, nil
}
