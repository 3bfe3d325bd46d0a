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
// worker's own events, which belong to no run. It must not block.
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
)

// WorkerEvent is one thing that happened to the worker.
type WorkerEvent struct {
	Kind WorkerEventKind
	At   time.Time
	// Err is the claimWork error of a ClaimFailed event.
	Err error
	// Recovery is what a Recovered event reports.
	Recovery Recovery
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
}
