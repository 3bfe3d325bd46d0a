package features

import (
	"context"
	"io"
	"time"
)

// Recoverer is implemented by a Feature that has something to finish for a
// run that a previous worker process held when it died: the new process
// calls Recover, before it claims anything, for every such run whose claim
// is still valid, then resolves the run exception/worker-shutdown. The
// backing log uploads the task log written so far this way.
type Recoverer interface {
	Recover(ctx context.Context, r RecoveredRun) error
}

// RecoveredRun is a run a previous worker process left unfinished.
type RecoveredRun struct {
	TaskID string
	RunID  int
	// PayloadLog is payload.log as the task gave it ("" when absent or
	// unreadable).
	PayloadLog string
	// Expires is the task's expiry.
	Expires time.Time
	// OpenLog opens the task log as written before the process died,
	// followed by the lines the new process added about the recovery.
	OpenLog func(ctx context.Context) (io.ReadCloser, error)
	// Artifacts creates artifacts of the run with its credentials.
	Artifacts Publisher
}
