package docker

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/moby/moby/client"
)

// DaemonError is a Docker call cut off by the daemon rather than refused
// by it: the daemon could not be reached (its socket is gone or refuses
// connections), a connection or response stream to it broke before the
// answer was complete (the daemon stopped or restarted), or a container
// the worker was waiting on vanished. Errors the daemon answers with (a
// missing image, a bad request) are not DaemonErrors.
//
// The Client returns one, wrapped in its usual message, from every call
// that fails this way; find it with [AsDaemonError].
type DaemonError struct {
	// What says what went wrong in a few words ("Docker daemon
	// unreachable", "task container disappeared").
	What string
	Err  error
}

func (e *DaemonError) Error() string { return e.Err.Error() }
func (e *DaemonError) Unwrap() error { return e.Err }

// WorkerFault reports that the error is a fault of what the worker runs on,
// not of the task (see worker/taskerr).
func (e *DaemonError) WorkerFault() bool { return true }

// What the daemon errors say.
const (
	unreachable = "Docker daemon unreachable"
	vanished    = "task container disappeared (was the Docker daemon restarted?)"
)

// AsDaemonError returns the DaemonError in err's tree, if any.
func AsDaemonError(err error) (*DaemonError, bool) {
	var de *DaemonError
	if errors.As(err, &de) {
		return de, true
	}
	return nil, false
}

// fault marks err as a [DaemonError] when it says that the connection to
// the daemon failed or broke; any other error, nil and errors of a
// cancelled or expired context are returned as they are. Use it only on
// errors of calls to the daemon: a broken connection elsewhere (a
// download feeding a load) is not the daemon's fault.
func fault(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if _, ok := AsDaemonError(err); ok {
		return err
	}
	if isConnFault(err) {
		return &DaemonError{What: unreachable, Err: err}
	}
	return err
}

// isConnFault reports whether err, from a call to the daemon, says that the
// connection failed: the client's connection-failed errors (dial refused,
// socket missing), a network error on the connection (reset, broken pipe)
// or a response stream that ended early.
func isConnFault(err error) bool {
	if client.IsErrConnectionFailed(err) {
		return true
	}
	if errors.Is(err, net.ErrClosed) {
		// The worker closed the connection itself.
		return false
	}
	var op *net.OpError
	if errors.As(err, &op) {
		return true
	}
	for _, e := range []error{io.EOF, io.ErrUnexpectedEOF, syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.EPIPE} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
