// Package taskerr classifies task errors by the resolution they lead to.
//
// Features and the runner wrap errors with the constructors here (for
// example MalformedPayload(err)); the runner calls [Classify] once, on the
// joined errors of a task, to pick how the run is resolved. Unclassified
// errors resolve the run as failed, as docker-worker did.
//
// Errors of what the worker runs on are classified where they arise,
// without this package: an error with a method WorkerFault() bool that
// returns true (the Docker client's errors of a daemon that went away,
// say) resolves the run worker-shutdown, so that the queue runs the task
// again elsewhere. The task is not at fault, and is not charged with being
// intermittent either.
package taskerr

import "fmt"

// Kind is how a run ends because of an error.
type Kind int

// The resolutions, in increasing precedence: when several errors of
// different kinds are joined, the highest wins.
const (
	// Failed resolves the run failed (reportFailed).
	Failed Kind = iota
	// MalformedPayloadKind resolves exception/malformed-payload.
	MalformedPayloadKind
	// ResourceUnavailableKind resolves exception/resource-unavailable.
	ResourceUnavailableKind
	// InternalErrorKind resolves exception/internal-error.
	InternalErrorKind
	// WorkerShutdownKind resolves exception/worker-shutdown (the queue retries).
	WorkerShutdownKind
	// CanceledKind means the queue already resolved the run: nothing is reported.
	CanceledKind
)

// Reason is the reportException reason for k ("" for Failed and CanceledKind).
func (k Kind) Reason() string {
	switch k {
	case MalformedPayloadKind:
		return "malformed-payload"
	case ResourceUnavailableKind:
		return "resource-unavailable"
	case InternalErrorKind:
		return "internal-error"
	case WorkerShutdownKind:
		return "worker-shutdown"
	}
	return ""
}

func (k Kind) String() string {
	switch k {
	case Failed:
		return "failed"
	case CanceledKind:
		return "canceled"
	}
	return k.Reason()
}

// Error is an error that carries its resolution.
type Error struct {
	Kind Kind
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func wrap(k Kind, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Kind: k, Err: err}
}

// MalformedPayload marks err as a problem with the task's payload.
func MalformedPayload(err error) error { return wrap(MalformedPayloadKind, err) }

// ResourceUnavailable marks err as a missing resource the task needs.
func ResourceUnavailable(err error) error { return wrap(ResourceUnavailableKind, err) }

// InternalError marks err as a worker bug or infrastructure failure.
func InternalError(err error) error { return wrap(InternalErrorKind, err) }

// WorkerShutdown marks err as the worker shutting down under the task.
func WorkerShutdown(err error) error { return wrap(WorkerShutdownKind, err) }

// Canceled marks err as the queue having resolved the run already.
func Canceled(err error) error { return wrap(CanceledKind, err) }

// Malformedf is MalformedPayload(fmt.Errorf(format, args...)).
func Malformedf(format string, args ...any) error {
	return MalformedPayload(fmt.Errorf(format, args...))
}

// workerFault is an error of what the worker runs on (see the package doc).
type workerFault interface {
	WorkerFault() bool
}

// Fault returns the first error in err's tree (depth first) that is a
// fault of what the worker runs on (see the package doc), or nil.
func Fault(err error) error {
	if err == nil {
		return nil
	}
	if f, ok := err.(workerFault); ok && f.WorkerFault() {
		return err
	}
	switch u := err.(type) {
	case interface{ Unwrap() []error }:
		for _, c := range u.Unwrap() {
			if f := Fault(c); f != nil {
				return f
			}
		}
	case interface{ Unwrap() error }:
		return Fault(u.Unwrap())
	}
	return nil
}

// Classify returns the resolution for err: the highest Kind found anywhere in
// its tree (errors.Join and %w chains), or Failed when none is marked. A
// worker fault anywhere in the tree counts as WorkerShutdownKind.
func Classify(err error) Kind {
	best := Failed
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		if te, ok := e.(*Error); ok && te.Kind > best {
			best = te.Kind
		}
		if f, ok := e.(workerFault); ok && f.WorkerFault() && WorkerShutdownKind > best {
			best = WorkerShutdownKind
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, c := range u.Unwrap() {
				walk(c)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return best
}

// Is reports whether err classifies as k.
func Is(err error, k Kind) bool { return err != nil && Classify(err) == k }
