package features

import (
	"context"
	"io"
)

// Opener attaches log sinks before anything is written to the task log.
type Opener interface {
	Open(ctx context.Context, req *OpenRequest, resp *OpenResponse) error
}

// OpenRequest is the input of [Opener.Open].
type OpenRequest struct{}

// OpenResponse collects what Open contributes.
type OpenResponse struct {
	// LogSinks receive every byte of the task log, in order: sinks of
	// payload features, opened after validation, first get what the log
	// already holds (the header). A sink must not block for long: slow
	// consumers buffer on their side.
	LogSinks []io.Writer
}

// ImageProvider makes the task image available to Docker. The runner calls
// the provider of the feature owning the payload's image section
// ("image.<type>") once, after the scope check and before Prepare, so that
// every Preparer can read the image's configuration from
// [PrepareRequest.Image]. Progress lines go to the task log.
type ImageProvider interface {
	ProvideImage(ctx context.Context, req *ImageRequest) (Image, error)
}

// ImageRequest is the input of [ImageProvider.ProvideImage].
type ImageRequest struct{}

// Image is a task image as Docker knows it.
type Image struct {
	// ID is the image ID ("sha256:..."), what the container is created from.
	ID string
	// Name is how the payload named it (a reference, or a description of
	// an artifact).
	Name string
	// ArtifactSHA256 is the hex sha256 of the artifact the image was loaded
	// from (task and indexed images), "" for registry images.
	ArtifactSHA256 string
	// Config is the image's own configuration.
	Config ImageConfig
	// Fetch says how the provider made the image available (for the
	// metrics; Fetch.Took is the runner's).
	Fetch ImageFetch
}

// ImageConfig is the part of an image's configuration features may need.
type ImageConfig struct {
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	User       string
}

// ScopeRequirer declares the scopes the payload's use of the feature needs.
// The runner checks them against the task's scopes once, after validation
// and before any image is fetched; when one is not met the run fails with
// the requirement's message in the task log.
type ScopeRequirer interface {
	RequiredScopes() []ScopeRequirement
}

// ScopeRequirement is met when the task has any one of AnyOf (a trailing *
// in a task scope matches any suffix).
type ScopeRequirement struct {
	AnyOf []string
	// Message is the line the task log shows when the requirement is not
	// met (docker-worker's wording where it had one).
	Message string
}

// Preparer contributes to the task container.
type Preparer interface {
	Prepare(ctx context.Context, req *PrepareRequest, resp *PrepareResponse) error
}

// PrepareRequest is the input of [Preparer.Prepare].
type PrepareRequest struct {
	// Image is the resolved task image.
	Image Image
}

// PrepareResponse is what a feature contributes to the task container. The
// runner merges every feature's response; clashes (the same env variable
// with two values, two mounts on one path, two network modes, two
// entrypoint wrappers, two cpusets) fail the run as an internal error.
type PrepareResponse struct {
	// Env adds variables; payload env overrides them, and the worker's
	// reserved variables override both.
	Env map[string]string
	// Mounts are bind mounts and named volumes.
	Mounts []Mount
	// Devices are host devices made available in the container.
	Devices []Device
	// ExtraHosts are "name:ip" entries added to /etc/hosts.
	ExtraHosts []string
	// Links are other containers reachable by alias ("container:alias").
	Links []string
	// NetworkMode replaces the default network ("" keeps it).
	NetworkMode string
	// SecurityOpt are Docker security options ("seccomp=unconfined").
	SecurityOpt []string
	// CapAdd adds Linux capabilities.
	CapAdd []string
	// Privileged runs the container privileged.
	Privileged bool
	// CpusetCpus pins the container to CPUs ("0", "2-3").
	CpusetCpus string
	// Entrypoint, when set, replaces the image's entrypoint; the payload
	// command follows as arguments. It wraps the task's command (an
	// interactive shell wrapper, for example); WrapImageEntrypoint appends
	// the image's own entrypoint after it.
	Entrypoint          []string
	WrapImageEntrypoint bool
	// LogLines are lines for the task log, written once the merged
	// contribution is known (before the container starts).
	LogLines []string
	// Caches are the volume caches the feature mounted, for the metrics
	// (the runner reports each; they do not change the container).
	Caches []CacheUse
}

// Mount is a bind mount (Source is a host path) or a named volume (Volume).
type Mount struct {
	Source   string
	Volume   bool
	Target   string
	ReadOnly bool
}

// Device is a host device node made available in the container.
type Device struct {
	HostPath      string
	ContainerPath string // "" for the host path
	Permissions   string // cgroup permissions; "" for "rwm"
}

// Starter runs after the container started.
type Starter interface {
	Started(ctx context.Context, req *StartedRequest) error
}

// StartedRequest is the input of [Starter.Started].
type StartedRequest struct {
	ContainerID string
}

// Exiter runs after the container exited by itself.
type Exiter interface {
	Exited(ctx context.Context, req *ExitedRequest) error
}

// ExitedRequest is the input of [Exiter.Exited].
type ExitedRequest struct {
	ContainerID string
	ExitCode    int
	// Container reads files out of the stopped container.
	Container ContainerFiles
}

// ContainerFiles reads files out of a stopped task container.
type ContainerFiles interface {
	// CopyFrom returns a tar stream of path (a file or a directory; a
	// relative path resolves against the container's working directory) and
	// whether it is a directory. A missing path gives an error satisfying
	// errors.Is(err, fs.ErrNotExist). The caller closes the stream.
	CopyFrom(ctx context.Context, path string) (io.ReadCloser, bool, error)
}

// Finisher runs once the task log is complete and sealed, before the run is
// resolved.
type Finisher interface {
	Finish(ctx context.Context, req *FinishRequest) error
}

// FinishRequest is the input of [Finisher.Finish].
type FinishRequest struct {
	// Success is the run's outcome so far.
	Success bool
	// Aborted is set when the run ended without the container exiting by
	// itself (maxRunTime, worker shutdown, setup failure, malformed payload).
	Aborted bool
}

// Cleaner releases what the feature holds. Always called, in reverse order.
type Cleaner interface {
	Cleanup(ctx context.Context) error
}
