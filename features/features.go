package features

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"time"

	"go.dockerworker.dev/docker-worker/schemas"
)

// Feature is one feature known to the worker process.
type Feature interface {
	// Name is the key under payload.features (for example "artifacts"), or
	// a descriptive name for an always-on built-in.
	Name() string
	// NewTask returns the per-task part of the feature. It must not have
	// side effects: no files, containers or network calls.
	NewTask(t Task) (TaskFeature, error)
}

// AlwaysOn is implemented by built-in features that take part in every task
// whatever its payload says (the task log). They are opened before the
// payload is validated.
type AlwaysOn interface {
	AlwaysOn() bool
}

// Defaulter is implemented by payload features that are on when the payload
// does not mention them (docker-worker's "task default"). Features without it
// are off unless the payload sets them to true.
type Defaulter interface {
	DefaultEnabled() bool
}

// TaskFeature is a feature's state for one task. It implements any of the
// phase interfaces: Opener, Preparer, Starter, Exiter, Finisher, Cleaner.
type TaskFeature interface{}

// Task is what a feature may know about and do for the task it serves.
type Task interface {
	// TaskID and RunID identify the run.
	TaskID() string
	RunID() int
	// Definition is the task definition exactly as the queue returned it.
	Definition() json.RawMessage
	// Payload is the validated payload (nil before validation, in Open of
	// always-on features).
	Payload() *schemas.Payload
	// Expires is the task's expiry; artifacts default to it.
	Expires() time.Time
	// Logger is the worker log, scoped to the task and the feature.
	Logger() *slog.Logger
	// Log is the task log (what the user reads). Use worker/tasklog's
	// InfoLine and ErrorLine formats for lines of your own.
	Log() io.Writer
	// Artifacts publishes artifacts of this run with its credentials.
	Artifacts() Publisher
	// Worker describes the worker and host running the task.
	Worker() WorkerInfo
	// ImageID is the task image's ID ("sha256:..."), once it is known
	// (from Prepare on); "" before.
	ImageID() string
	// ArtifactHashes returns the sha256 (hex) of every artifact uploaded so
	// far with Upload.SHA256 set, by name. Chain of trust signs them.
	ArtifactHashes() map[string]string
}

// WorkerInfo describes the worker running a task.
type WorkerInfo struct {
	RootURL       string
	ProvisionerID string
	WorkerType    string
	WorkerGroup   string
	WorkerID      string
	// Host facts, as configured (empty when unknown).
	PublicIP     string
	PrivateIP    string
	InstanceID   string
	InstanceType string
	Region       string
	// Hostname is the name other machines reach this worker by (the
	// `host` config key), for URLs such as the live log's.
	Hostname string
}

// Publisher creates artifacts for the current run. Every method retries
// transient failures itself; an error is final.
type Publisher interface {
	// Upload creates an artifact and uploads the body Open returns
	// (called again for each retry), with the worker's storage type: s3,
	// or object (which stores a gzip body decoded).
	Upload(ctx context.Context, a Upload) error
	// Reference creates a reference artifact pointing at url.
	Reference(ctx context.Context, name, url, contentType string, expires time.Time) error
	// Link creates a link artifact pointing at another artifact of the run.
	Link(ctx context.Context, name, target string, expires time.Time) error
	// Error creates an error artifact.
	Error(ctx context.Context, name, reason, message string, expires time.Time) error
}

// Upload describes an artifact upload.
type Upload struct {
	Name            string
	ContentType     string
	ContentEncoding string // "" or "gzip"
	Expires         time.Time
	Size            int64
	Open            func() (io.ReadCloser, error)
	// SHA256 is the hex sha256 of the uncompressed content, if known; it is
	// recorded for chain of trust (see Task.ArtifactHashes).
	SHA256 string
	// Digest, when set, is called once the upload succeeded and returns the
	// hex sha256 of the content Open delivered; it is recorded instead of
	// SHA256. It serves bodies that are hashed while they are sent.
	Digest func() string
}

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

// Preparer contributes to the container configuration.
type Preparer interface {
	Prepare(ctx context.Context, req *PrepareRequest, resp *PrepareResponse) error
}

// PrepareRequest is the input of [Preparer.Prepare].
type PrepareRequest struct{}

// PrepareResponse collects what features contribute to the container; the
// runner merges all responses and reports clashes.
type PrepareResponse struct {
	// Env adds variables; payload env overrides them, and the worker's
	// reserved variables override both.
	Env map[string]string
	// Binds are host:container[:ro] bind mounts.
	Binds []string
	// Devices are host device paths made available at the same path.
	Devices []string
	// CapAdd adds Linux capabilities.
	CapAdd []string
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

// Finisher runs once the task log is complete, before the run is resolved.
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
