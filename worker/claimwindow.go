package worker

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"time"

	"go.dockerworker.dev/docker-worker/worker/internal/backoff"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// How the run's queue calls are retried. The tc client retries a call that
// fails with a 5xx answer or a network error; under tc.RetryUntil it keeps
// doing so until a deadline. A run's calls take the claim as that
// deadline: until takenUntil the run is ours and its temporary credentials
// are valid, so giving up earlier throws away work the queue would still
// accept.
const (
	// minWindow is how long a report or an upload is retried at least,
	// even when the claim runs out sooner.
	minWindow = time.Minute
	// callTimeout bounds one attempt of a small queue call (reclaim,
	// report, status): one that hangs is abandoned and tried again while
	// the window lasts.
	callTimeout = 30 * time.Second
	// windowPause is the most the run waits between two attempts that each
	// used up their own retries (a hung call, or a claim moved on by a
	// reclaim meanwhile).
	windowPause = 5 * time.Second
)

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

// untilWindowEnds calls fn until it succeeds, fails with an error that is
// not transient (see transient), ctx is done, or end() has passed. end is
// read again after every failure, so a window that moves on (a reclaim
// pushes takenUntil) is followed. Each call runs under tc.RetryUntil(end())
// and, when attempt is positive, a timeout of its own.
func (r *run) untilWindowEnds(ctx context.Context, attempt time.Duration, end func() time.Time, fn func(context.Context) error) error {
	for n := 1; ; n++ {
		actx := tc.RetryUntil(ctx, end())
		cancel := context.CancelFunc(func() {})
		if attempt > 0 {
			actx, cancel = context.WithTimeout(actx, attempt)
		}
		err := fn(actx)
		cancel()
		if err == nil || ctx.Err() != nil || !transient(err) {
			return err
		}
		left := end().Sub(r.w.now())
		if left <= 0 {
			return err
		}
		pause := backoff.Policy{Base: 100 * time.Millisecond, Max: windowPause, Jitter: 0.25}.Delay(n)
		if backoff.Wait(ctx, min(pause, left)) != nil {
			return err
		}
	}
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
