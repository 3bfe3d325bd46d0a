package features

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"time"

	"go.dockerworker.dev/docker-worker/schemas"
)

// Feature is one feature known to the worker process, built once in the
// wiring and listed explicitly.
type Feature interface {
	// Name is the key under payload.features (for example "artifacts") for
	// a payload feature, or a descriptive name for an always-on built-in.
	Name() string
	// NewTask returns the per-task part of the feature. It must not have
	// side effects: no files, containers or network calls. It may return
	// (nil, nil) when the feature has nothing to do for this task.
	NewTask(t Task) (TaskFeature, error)
}

// AlwaysOn is implemented by built-in features that take part in every task
// whatever its payload says (the task log, the task image, capabilities).
// They are created and opened before the payload is validated, so their
// Task.Payload is nil in Open.
type AlwaysOn interface {
	AlwaysOn() bool
}

// Defaulter is implemented by payload features that are on when the payload
// does not mention them (docker-worker's "task default"). Features without it
// are off unless the payload sets them to true.
type Defaulter interface {
	DefaultEnabled() bool
}

// WorkerDefaulter is implemented by payload features whose worker-side
// switch (config features.<name>.enabled) is off when the config does not
// set it. Features without it are enabled by default.
type WorkerDefaulter interface {
	EnabledByDefault() bool
}

// Owner is implemented by features that serve parts of the payload beyond
// their own features.<name> switch. Sections are the paths
// [schemas.Payload.Sections] reports, such as "image.docker-image",
// "capabilities.privileged" or "cache"; a section ending in "." owns every
// path below it ("capabilities.devices."). The runner refuses, as a
// malformed payload, a task that uses a section no enabled feature owns.
// A payload feature always owns "features.<Name>".
type Owner interface {
	Owns() []string
}

// PayloadChecker is implemented by features that refuse, as a malformed
// payload, values the schema accepts but that can never work: an artifact
// name the queue cannot store, an image reference Docker cannot parse. The
// worker asks every feature it has (enabled or not) once the payload has
// passed the schema, before anything is created, and lists every problem in
// the task log with the schema's; `docker-worker validate` runs the same
// check. CheckPayload has no side effects. Each problem's Path names the
// offending value in the notation of schemas.Problem (schemas.MemberPath
// builds it).
type PayloadChecker interface {
	CheckPayload(p *schemas.Payload) []schemas.Problem
}

// TaskFeature is a feature's state for one task. It implements any of the
// phase interfaces ([Opener], [ImageProvider], [ScopeRequirer], [Preparer],
// [Starter], [Exiter], [Finisher], [Cleaner]); the runner finds them by
// type assertion.
type TaskFeature interface{}

// Task is what a feature may know about and do for the task it serves. Its
// methods are safe for concurrent use.
type Task interface {
	// TaskID and RunID identify the run.
	TaskID() string
	RunID() int
	// Definition is the task definition exactly as the queue returned it.
	Definition() json.RawMessage
	// Scopes are the task's scopes, as in its definition.
	Scopes() []string
	// Payload is the validated payload (nil before validation, in Open of
	// always-on features).
	Payload() *schemas.Payload
	// Expires is the task's expiry; artifacts default to it.
	Expires() time.Time
	// Deadline is the task's deadline.
	Deadline() time.Time
	// Logger is the worker log, scoped to the task and the feature.
	Logger() *slog.Logger
	// Log is the task log (what the user reads). Use worker/tasklog's
	// InfoLine and ErrorLine formats for lines of your own. Writes after
	// the log is sealed (before Finish) are dropped.
	Log() io.Writer
	// Artifacts publishes artifacts of this run with its credentials.
	Artifacts() Publisher
	// Credentials are the run's current temporary credentials; they change
	// at every reclaim, so read them when they are needed.
	Credentials() Credentials
	// Resources are facts about the run shared between features.
	Resources() *Resources
	// Worker describes the worker and host running the task.
	Worker() WorkerInfo
}

// Credentials are Taskcluster credentials (temporary ones carry a
// certificate).
type Credentials struct {
	ClientID    string
	AccessToken string
	Certificate string
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
	// ContainerLabels are labels every container a feature creates for a
	// task must carry, so that a restarted worker finds and removes what
	// a killed one left.
	ContainerLabels map[string]string
	// Hostname is the name other machines reach this worker by (the
	// `host` config key), for URLs such as the live log's.
	Hostname string
}

// Pool is the worker pool ID, provisionerId/workerType.
func (w WorkerInfo) Pool() string { return w.ProvisionerID + "/" + w.WorkerType }

// Publisher creates artifacts for the current run. Every method retries
// transient failures itself; an error is final. Uploads with a SHA256 or
// Digest are recorded in the run's [Resources].
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
	// Open returns the body; it is called again for each attempt, and the
	// body must stop when ctx is done.
	Open func(ctx context.Context) (io.ReadCloser, error)
	// SHA256 is the hex sha256 of the uncompressed content, if known; it is
	// recorded in the run's Resources (chain of trust signs it).
	SHA256 string
	// Digest, when set, is called once the upload succeeded and returns the
	// hex sha256 of the content Open delivered; it is recorded instead of
	// SHA256. It serves bodies that are hashed while they are sent.
	Digest func() string
}
