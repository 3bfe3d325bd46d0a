package features

import (
	"context"
	"time"
)

// Extension is implemented by a [Feature] (or a worker service wired beside
// the features) that takes part in the worker's life, not only in tasks.
// Init is called once, in list order, before the first claim; it registers
// hooks on the host and must not block. An error stops the worker before it
// claims anything.
type Extension interface {
	Init(ctx context.Context, h Host) error
}

// Host is the worker as an [Extension] sees it. Register hooks only from
// Init.
type Host interface {
	// BeforeClaim registers a hook called before every claimWork call.
	BeforeClaim(BeforeClaimHook)
	// AfterClaim registers a hook called for every claimed run, before it
	// starts.
	AfterClaim(AfterClaimHook)
	// BeforeFirstClaim registers a hook called once, after every Init and
	// before the first claim (crash recovery, clean-up of what a previous
	// process left). An error stops the worker.
	BeforeFirstClaim(StartHook)
	// Observe registers an observer of run events (and of worker events,
	// when it is a [WorkerObserver]).
	Observe(Observer)
	// Runs are the runs in progress.
	Runs() Runs
}

// BeforeClaimHook may lower the number of tasks the worker is about to
// claim: it returns the most it allows now and, when that is below want,
// why (disk space, devices, an unusable certificate...). The worker claims
// the smallest allowance and logs the reasons when they change. It must
// return quickly.
type BeforeClaimHook func(ctx context.Context, want int) (allow int, reason string)

// AfterClaimHook is told about a run the worker just claimed.
type AfterClaimHook func(ctx context.Context, run RunRef)

// StartHook runs once before the first claim.
type StartHook func(ctx context.Context) error

// RunRef names a run held by this worker.
type RunRef struct {
	TaskID string
	RunID  int
}

// Runs is the registry of the runs in progress.
type Runs interface {
	// Cancel stops a run as the queue cancelled it: its container is
	// killed, the Finish phase is skipped (the queue has resolved the run,
	// so nothing of it is uploaded) and nothing is reported. It returns
	// false when the worker holds no such run.
	Cancel(taskID string, runID int, cause error) bool
	// List returns the runs in progress.
	List() []RunRef
}

// Observer receives run events. Calls come from the runs' goroutines, in
// order for one run, concurrently across runs; an observer must not block.
type Observer interface {
	RunEvent(ev Event)
}

// WorkerObserver is implemented by an [Observer] that also wants the
// worker's own events, which belong to no run. It must not block, and may
// be called concurrently (a failed queue call is reported from the
// goroutine that made it).
type WorkerObserver interface {
	WorkerEvent(ev WorkerEvent)
}

// WorkerEventKind says what happened to the worker.
type WorkerEventKind int

const (
	// ClaimFailed: a claimWork call failed (WorkerEvent.Err).
	ClaimFailed WorkerEventKind = iota
	// Recovered: the worker finished what a previous process left
	// (WorkerEvent.Recovery); sent only when there was something.
	Recovered
	// Ready: the worker is about to claim for the first time (every
	// Init, the recovery and the start hooks are done).
	Ready
	// QueueCallFailed: a call to a Taskcluster service failed for good,
	// after its retries (WorkerEvent.Call, WorkerEvent.Err).
	QueueCallFailed
	// SpotNotice: the instance received an interruption notice
	// (WorkerEvent.Notice).
	SpotNotice
	// Stopped: the worker claims no more and every run it held is
	// resolved; the process is about to end or shut the host down.
	Stopped
)

// WorkerEvent is one thing that happened to the worker.
type WorkerEvent struct {
	Kind WorkerEventKind
	At   time.Time
	// Err is the claimWork error of a ClaimFailed event.
	Err error
	// Recovery is what a Recovered event reports.
	Recovery Recovery
	// Call names the call of a QueueCallFailed event.
	Call Call
	// Notice is the interruption notice of a SpotNotice event.
	Notice Notice
}

// Call names a failed call to a Taskcluster service.
type Call struct {
	// Service is the service ("queue", "object", "index", ...).
	Service string
	// Method is the API method ("claimWork", "reclaimTask",
	// "createArtifact", ...), or the HTTP method and path pattern of a
	// call the client does not name.
	Method string
	// Status is the HTTP answer, 0 when there was none.
	Status int
}

// Notice is an instance interruption notice.
type Notice struct {
	// Action is what will happen ("terminate", "stop", "hibernate").
	Action string
	// Time is when, if the notice says (zero otherwise).
	Time time.Time
}

// Recovery counts what the worker did at start with what a previous
// process left.
type Recovery struct {
	ContainersRemoved, RunsResolved, RunsExpired, RunsFailed int
	Took                                                     time.Duration
}

// EventKind says what happened to a run.
type EventKind int

// Run events, in the order a run produces them (Phase repeats).
const (
	// Claimed: the worker holds the run.
	Claimed EventKind = iota
	// PhaseReached: the run finished Event.Phase.
	PhaseReached
	// FirstOutput: the container wrote its first byte.
	FirstOutput
	// Resolved: the run is resolved (Event.State, Event.Reason), or left
	// unreported because the queue resolved it first (State "canceled").
	Resolved
	// ImageReady: the task image is in Docker (Event.Image), just before
	// the image phase is reached.
	ImageReady
	// CacheUsed: a volume cache was mounted for the run (Event.Cache),
	// once per cache, after Prepare.
	CacheUsed
	// ArtifactUploaded: an upload through the run's Publisher ended, well
	// or not (Event.Artifact); payload artifacts while the run is in its
	// artifacts phase, logs after it. Parallel uploads report
	// concurrently.
	ArtifactUploaded
)

// Phases a run reaches, in order (a run may skip some).
const (
	PhaseImage       = "image"
	PhaseCreated     = "created"
	PhaseStarted     = "started"
	PhaseExited      = "exited"
	PhaseArtifacts   = "artifacts"
	PhaseLogUploaded = "logUploaded"
)

// Event is one thing that happened to a run.
type Event struct {
	Kind  EventKind
	Run   RunRef
	At    time.Time
	Phase string
	// State and Reason of a Resolved event: "completed", "failed",
	// "exception" (Reason the exception reason) or "canceled".
	State  string
	Reason string
	// TaskCreated is the task's creation time, on Claimed events.
	TaskCreated time.Time
	// Image is the task image of an ImageReady event.
	Image ImageFetch
	// Cache is the volume cache of a CacheUsed event.
	Cache CacheUse
	// Artifact is the upload of an ArtifactUploaded event.
	Artifact ArtifactUpload
}

// Kinds of task images, as ImageFetch.Kind names them.
const (
	ImagePull         = "pull"
	ImageTaskImage    = "task-image"
	ImageIndexedImage = "indexed-image"
)

// ImageFetch is how a task image was made available. The image provider
// declares it in [Image.Fetch]; the runner adds Took and reports it.
type ImageFetch struct {
	// Kind is ImagePull, ImageTaskImage or ImageIndexedImage.
	Kind string
	// Cached says the image was already in Docker: nothing was fetched.
	Cached bool
	// Shared says the run waited for a fetch another run had started.
	Shared bool
	// Bytes is what was fetched: the artifact's bytes as read from the
	// queue (task and indexed images), or the image's size as Docker
	// reports it (pulls); 0 when cached.
	Bytes int64
	// Took is the time the provider took, waiting for a shared fetch
	// included (set by the runner).
	Took time.Duration
}

// CacheUse is one volume cache mounted for a run. The cache feature
// declares it in [PrepareResponse.Caches]; the runner reports it.
type CacheUse struct {
	Name string
	// Hit says an existing instance was reused; otherwise a new, empty
	// one was created.
	Hit bool
}

// ArtifactUpload is one upload through a run's [Publisher].
type ArtifactUpload struct {
	Name string
	// Bytes is the body's size as sent (compressed when gzipped).
	Bytes int64
	// Took is from the creation of the artifact to the end of the upload,
	// retries included.
	Took time.Duration
	// Failed says the upload gave up.
	Failed bool
}
