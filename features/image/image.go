// Package image is the always-on built-in feature that provides the task
// image for payloads naming a registry image (a plain string, or
// {type: docker-image, name}): it pulls the image when Docker does not
// have it (concurrent pulls of one image are shared, retried as the
// worker's pull policy says), writes the pull's progress to the task log,
// and reads the image's configuration for the features that need it.
package image

import (
	"context"
	"fmt"
	"io"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/schemas"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/tasklog"
)

// Name is the feature's name in worker logs.
const Name = "image"

// Docker is what the feature needs of the Docker client.
type Docker interface {
	// EnsureImage pulls ref unless it is present and returns its ID.
	EnsureImage(ctx context.Context, ref string, progress io.Writer, p docker.PullPolicy) (string, error)
	// InspectImage returns a local image's configuration.
	InspectImage(ctx context.Context, ref string) (docker.ImageConfig, error)
}

// Feature provides registry images.
type Feature struct {
	d      Docker
	policy docker.PullPolicy
}

var (
	_ features.Feature  = (*Feature)(nil)
	_ features.AlwaysOn = (*Feature)(nil)
	_ features.Owner    = (*Feature)(nil)
)

// New returns the feature pulling through d with policy.
func New(d Docker, policy docker.PullPolicy) *Feature { return &Feature{d: d, policy: policy} }

// Name implements features.Feature.
func (f *Feature) Name() string { return Name }

// AlwaysOn implements features.AlwaysOn: every task has an image.
func (f *Feature) AlwaysOn() bool { return true }

// Owns implements features.Owner.
func (f *Feature) Owns() []string { return []string{"image." + schemas.ImageTypeDockerImage} }

// NewTask implements features.Feature.
func (f *Feature) NewTask(t features.Task) (features.TaskFeature, error) {
	return &task{f: f, t: t}, nil
}

type task struct {
	f *Feature
	t features.Task
}

var _ features.ImageProvider = (*task)(nil)

// ProvideImage implements features.ImageProvider.
func (k *task) ProvideImage(ctx context.Context, _ *features.ImageRequest) (features.Image, error) {
	name := k.t.Payload().Image.Name
	id, err := k.f.d.EnsureImage(ctx, name, k.t.Log(), k.f.policy)
	if err != nil {
		if ctx.Err() == nil {
			io.WriteString(k.t.Log(), tasklog.ErrorLine("Pulling docker image has failed."))
			io.WriteString(k.t.Log(), tasklog.ErrorLine("Error: "+err.Error()))
		}
		return features.Image{}, fmt.Errorf("pull image %q: %w", name, err)
	}
	cfg, err := k.f.d.InspectImage(ctx, id)
	if err != nil {
		return features.Image{}, err
	}
	return features.Image{
		ID:   id,
		Name: name,
		Config: features.ImageConfig{
			Entrypoint: cfg.Entrypoint,
			Cmd:        cfg.Cmd,
			Env:        cfg.Env,
			WorkingDir: cfg.WorkingDir,
			User:       cfg.User,
		},
	}, nil
}
