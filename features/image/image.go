// Package image is the always-on built-in feature that owns the payload's
// image section and provides the task image in all three of its forms:
//
//   - a registry image (a plain string, or {type: docker-image, name}):
//     pulled when Docker does not have it, with the configured registry
//     credentials when one applies (which then needs the scope
//     docker-worker:image:<name>);
//   - a task image ({type: task-image, taskId, path}): an artifact of
//     another task holding a `docker save` archive (.tar, gzip, .tar.lz4 or
//     .tar.zst), streamed from the queue through its decompressor into
//     Docker in one pass;
//   - an indexed image ({type: indexed-image, namespace, path}): the same,
//     for the task the index names (resolved for every task).
//
// A registry name that is not a valid Docker reference, a task ID that is
// not a slug id, an index namespace that is empty or holds control
// characters, or an artifact path that is not an artifact name is refused
// as a malformed payload before anything runs (see [Feature.CheckPayload]).
//
// An artifact that is not under public/ needs queue:get-artifact:<path>.
// A loaded artifact image is tagged with a name derived from (taskId, path)
// and a second tag holding the artifact's sha256, so Docker alone
// remembers what was loaded: later tasks, and a restarted worker, load
// nothing again. Concurrent tasks share one pull or one download. Progress
// goes to the task log; the provided image carries the artifact's sha256
// for chain of trust.
//
// Only worker/wiring builds it; the runner-tier tests also build it with a
// scripted Docker.
package image

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"time"

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
	// LoadImage loads the one image of a `docker save` archive read from r,
	// tags it ref and returns its ID.
	LoadImage(ctx context.Context, r io.Reader, ref string) (string, error)
	// TagImage adds the reference ref to image id.
	TagImage(ctx context.Context, id, ref string) error
	// ListTags returns the tags of the local images of repository.
	ListTags(ctx context.Context, repository string) ([]string, error)
}

// Config configures the feature.
type Config struct {
	// Docker pulls, loads and inspects images.
	Docker Docker
	// Queue downloads artifact images and resolves index namespaces. Without
	// it task and indexed images fail.
	Queue Queue
	// Policy is how pulls and artifact downloads are retried; its
	// StallTimeout also bounds how long a download may make no progress.
	// Its Auth is ignored: credentials come from Registries.
	Policy docker.PullPolicy
	// Registries are registry credentials by "<host>[/<path>]": the longest
	// key that is a name's repository or a '/'-bounded prefix of it applies.
	Registries map[string]RegistryCredentials
	// DefaultRegistry is the host looked up for names that have none.
	DefaultRegistry string
	// ProgressInterval is how often a download's progress is written to
	// the task log (0: every 10 seconds).
	ProgressInterval time.Duration
}

// RegistryCredentials are the credentials of one registries entry.
type RegistryCredentials struct {
	Username, Password string
}

// Feature provides task images.
type Feature struct {
	cfg   Config
	loads group
}

var (
	_ features.Feature  = (*Feature)(nil)
	_ features.AlwaysOn = (*Feature)(nil)
	_ features.Owner    = (*Feature)(nil)

	_ features.PayloadChecker = (*Feature)(nil)
)

// New returns the feature.
func New(cfg Config) *Feature {
	if cfg.ProgressInterval <= 0 {
		cfg.ProgressInterval = 10 * time.Second
	}
	cfg.Policy.Auth = nil
	return &Feature{cfg: cfg}
}

// Name implements features.Feature.
func (f *Feature) Name() string { return Name }

// AlwaysOn implements features.AlwaysOn: every task has an image.
func (f *Feature) AlwaysOn() bool { return true }

// Owns implements features.Owner.
func (f *Feature) Owns() []string {
	return []string{
		"image." + schemas.ImageTypeDockerImage,
		"image." + schemas.ImageTypeTaskImage,
		"image." + schemas.ImageTypeIndexedImage,
	}
}

// NewTask implements features.Feature.
func (f *Feature) NewTask(t features.Task) (features.TaskFeature, error) {
	return &task{f: f, t: t}, nil
}

type task struct {
	f *Feature
	t features.Task
}

var (
	_ features.ImageProvider = (*task)(nil)
	_ features.ScopeRequirer = (*task)(nil)
)

// publicPath matches artifact names anyone may read (docker-worker's rule).
var publicPath = regexp.MustCompile(`^/?public/`)

// RequiredScopes implements features.ScopeRequirer: a registry image needs
// docker-worker:image:<name> when configured credentials apply to it, and
// an artifact outside public/ needs queue:get-artifact:<path>.
func (k *task) RequiredScopes() []features.ScopeRequirement {
	img := k.t.Payload().Image
	var anyOf []string
	switch img.Type {
	case schemas.ImageTypeDockerImage:
		if _, ok := k.f.credentials(img.Name); ok {
			anyOf = imageScopes(img.Name)
		}
	case schemas.ImageTypeTaskImage, schemas.ImageTypeIndexedImage:
		if !publicPath.MatchString(img.Path) {
			anyOf = []string{"queue:get-artifact:" + img.Path}
		}
	}
	if anyOf == nil {
		return nil
	}
	return []features.ScopeRequirement{{AnyOf: anyOf, Message: notAuthorized(img)}}
}

// notAuthorized is docker-worker's message for a missing image scope.
func notAuthorized(img schemas.Image) string {
	raw, err := json.Marshal(img)
	if err != nil {
		raw = []byte(fmt.Sprintf("%q", img.Name))
	}
	return fmt.Sprintf("Not authorized to use %s.  Ensure that the task scopes are correctly defined in the task definition", raw)
}

// ProvideImage implements features.ImageProvider.
func (k *task) ProvideImage(ctx context.Context, _ *features.ImageRequest) (features.Image, error) {
	img := k.t.Payload().Image
	if img.Type == schemas.ImageTypeDockerImage {
		return k.pull(ctx, img.Name)
	}
	return k.artifactImage(ctx, img)
}

// pull provides a registry image.
func (k *task) pull(ctx context.Context, name string) (features.Image, error) {
	p := k.f.cfg.Policy
	if auth, ok := k.f.credentials(name); ok {
		p.Auth = &auth
	}
	// Present before: nothing is pulled (EnsureImage only looks it up).
	_, present := k.f.cfg.Docker.InspectImage(ctx, name)
	id, err := k.f.cfg.Docker.EnsureImage(ctx, name, k.t.Log(), p)
	if err != nil {
		k.failed(ctx, err)
		return features.Image{}, fmt.Errorf("pull image %q: %w", name, err)
	}
	img, err := k.image(ctx, id, name, "")
	img.Fetch.Kind, img.Fetch.Cached = features.ImagePull, present == nil
	if img.Fetch.Cached {
		img.Fetch.Bytes = 0
	}
	return img, err
}

// failed writes docker-worker's lines for an image that could not be had,
// unless the task was aborted.
func (k *task) failed(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	io.WriteString(k.t.Log(), tasklog.ErrorLine("Pulling docker image has failed."))
	io.WriteString(k.t.Log(), tasklog.ErrorLine("Error: "+err.Error()))
}

// image reads the configuration of image id.
func (k *task) image(ctx context.Context, id, name, artifactSHA256 string) (features.Image, error) {
	cfg, err := k.f.cfg.Docker.InspectImage(ctx, id)
	if err != nil {
		return features.Image{}, err
	}
	return features.Image{
		ID:             id,
		Name:           name,
		ArtifactSHA256: artifactSHA256,
		Config: features.ImageConfig{
			Entrypoint: cfg.Entrypoint,
			Cmd:        cfg.Cmd,
			Env:        cfg.Env,
			WorkingDir: cfg.WorkingDir,
			User:       cfg.User,
		},
		Fetch: features.ImageFetch{Bytes: cfg.Size},
	}, nil
}

// info writes one information line to w.
func info(w io.Writer, format string, args ...any) {
	io.WriteString(w, tasklog.InfoLine(time.Now(), fmt.Sprintf(format, args...)))
}
