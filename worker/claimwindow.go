package worker

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"time"

	"go.dockerworker.dev/docker-worker/worker/tc"
)

// How the run's queue calls are retried. The tc client retries a call that
// fails with a 5xx answer, a network error or a timed-out attempt; under
// tc.RetryUntil it keeps doing so until a deadline. A run's calls take the
// claim as that deadline: until takenUntil the run is ours and its
// temporary credentials are valid, so giving up earlier throws away work
// the queue would still accept.
//
// minWindow is how long a report or an upload is retried at least, even
// when the claim runs out sooner.
const minWindow = time.Minute

// claimEnd is the run's current takenUntil.
func (r *run) claimEnd() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.takenUntil
}

// claimWindow is until when a report or an upload starting now is
// retried: the claim's takenUntil, but at least minWindow from now.
func (r *run) claimWindow() time.Time {
	return latest(r.claimEnd(), r.w.now().Add(minWindow))
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// transient reports whether err is a failure of the infrastructure rather
// than an answer about the request: a 5xx answer, a network error, or an
// attempt that timed out. A 4xx answer, and anything the request could not
// even be built from, is not transient.
func transient(err error) bool {
	if err == nil {
		return false
	}
	if s := tc.StatusCode(err); s != 0 {
		return s >= 500
	}
	var ne net.Error
	switch {
	case errors.As(err, &ne),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return true
	}
	return false
}
