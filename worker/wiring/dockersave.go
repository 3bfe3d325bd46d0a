package wiring

import (
	"go.dockerworker.dev/docker-worker/features/dind"
	dockersave "go.dockerworker.dev/docker-worker/features/dockerSave"
	"go.dockerworker.dev/docker-worker/features/image"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/docker"
)

// dockerSaveFeature builds the dockerSave feature: archives under the
// features' temporary directory, artifacts kept dockerSave.expiration.
// d is nil for the inert feature list.
func dockerSaveFeature(cfg *config.Config, opts Options, d image.Docker) *dockersave.Feature {
	c := dockersave.Config{Expiration: cfg.DockerSaveExpiration(), TempDir: opts.TempDir}
	if dc := clientOf(d); dc != nil {
		c.Docker = dc
	}
	return dockersave.New(c)
}

// clientOf finds the Docker client behind d (nil when there is none, as
// for the inert feature list).
func clientOf(d image.Docker) *docker.Client {
	if t, ok := d.(trackedImages); ok {
		d = t.Docker
	}
	c, _ := d.(*docker.Client)
	return c
}

// dindFeature builds the dind feature: the configured dindImage, pulled
// with the worker's policy; socket directories under the features'
// temporary directory. d is nil for the inert feature list.
func dindFeature(cfg *config.Config, opts Options, d image.Docker) *dind.Feature {
	c := dind.Config{Image: cfg.DindImage, Policy: PullPolicy(cfg), TempDir: opts.TempDir}
	if dc := clientOf(d); dc != nil {
		c.Docker = dc
	}
	return dind.New(c)
}
