// Package logcopy is the part the log features share (the task log, the
// bulk log, the certified log): a gzip copy of the task log kept in a
// temporary file while the task runs and uploaded as an artifact once the
// log is sealed. For the features under features/ only.
package logcopy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	wa "go.dockerworker.dev/docker-worker/worker/artifacts"
)

// Copy is one gzip copy of the task log.
type Copy struct {
	file *wa.LogFile
}

// Open creates the copy in dir ("" for the system default) and adds it to
// the task log's sinks in resp.
func Open(dir, pattern string, resp *features.OpenResponse) (*Copy, error) {
	l, err := wa.NewLogFile(dir, pattern)
	if err != nil {
		return nil, err
	}
	resp.LogSinks = append(resp.LogSinks, l)
	return &Copy{file: l}, nil
}

// Artifact names the artifact a copy is uploaded as.
type Artifact struct {
	Name        string
	ContentType string
	Expires     time.Time
	// RecordHash records the sha256 of the uncompressed log with the
	// upload (for chain of trust).
	RecordHash bool
}

// Upload completes the copy (the task log must be sealed) and uploads it
// gzip-encoded as a.
func (c *Copy) Upload(ctx context.Context, pub features.Publisher, a Artifact) error {
	if c == nil || c.file == nil {
		return errors.New("the log copy was never opened")
	}
	size, sum, err := c.file.Finish()
	if err != nil {
		return fmt.Errorf("%s: %w", a.Name, err)
	}
	u := features.Upload{
		Name:            a.Name,
		ContentType:     a.ContentType,
		ContentEncoding: "gzip",
		Expires:         a.Expires,
		Size:            size,
		Open:            c.file.Open,
	}
	if a.RecordHash {
		u.SHA256 = sum
	}
	if err := pub.Upload(ctx, u); err != nil {
		return fmt.Errorf("upload %s: %w", a.Name, err)
	}
	return nil
}

// Remove deletes the copy. It is idempotent and safe on a nil Copy.
func (c *Copy) Remove() error {
	if c == nil || c.file == nil {
		return nil
	}
	return c.file.Remove()
}
