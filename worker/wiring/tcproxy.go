package wiring

import (
	"go.dockerworker.dev/docker-worker/features/image"
	taskclusterproxy "go.dockerworker.dev/docker-worker/features/taskclusterProxy"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/docker"
)

// proxyFeature is the taskclusterProxy feature on the worker's Docker
// client (without one, for payload checks, it only owns its section).
func proxyFeature(cfg *config.Config, opts Options, d image.Docker) *taskclusterproxy.Feature {
	if t, ok := d.(trackedImages); ok {
		d = t.Docker
	}
	c := taskclusterproxy.Config{
		WorkerID: cfg.WorkerID,
		Logger:   opts.Logger.With("feature", taskclusterproxy.Name),
	}
	if dc, ok := d.(*docker.Client); ok && dc != nil {
		c.Networks = dc
	}
	return taskclusterproxy.New(c)
}
