// Package taskerr classifies task errors by the resolution they lead to.
//
// Features and the runner wrap errors with the constructors here (for
// example MalformedPayload(err)); the runner calls [Classify] once, on the
// joined errors of a task, to pick how the run is resolved. Unclassified
// errors resolve the run as failed, as docker-worker did.
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

// Classify returns the resolution for err: the highest Kind found anywhere in
// its tree (errors.Join and %w chains), or Failed when none is marked.
func Classify(err error) Kind {
	best := Failed
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		var te *Error
		if x, ok := e.(*Error); ok {
			te = x
		}
		if te != nil && te.Kind > best {
			best = te.Kind
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
