// Package logcopy is the part the log features share (the task log, the
// bulk log, the certified log): a gzip copy of the task log kept in a
// temporary file while the task runs and uploaded as an artifact once the
// log is sealed. A feature embeds [Copy] in its per-task state, which gives
// it the Open and Cleanup phases; its Finish calls [Copy.Upload]. For the
// features under features/ only.
package logcopy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	wa "go.dockerworker.dev/docker-worker/worker/artifacts"
)

// Copy is one gzip copy of the task log.
type Copy struct {
	// What names the copy in errors ("bulk log").
	What string
	// Dir holds the temporary file ("" for the system default); Pattern
	// names it (see os.CreateTemp).
	Dir, Pattern string

	file *wa.LogFile
}

var (
	_ features.Opener  = (*Copy)(nil)
	_ features.Cleaner = (*Copy)(nil)
)

// Open implements features.Opener: it creates the file and adds it to the
// task log's sinks.
func (c *Copy) Open(_ context.Context, _ *features.OpenRequest, resp *features.OpenResponse) error {
	l, err := wa.NewLogFile(c.Dir, c.Pattern)
	if err != nil {
		return fmt.Errorf("%s: %w", c.What, err)
	}
	c.file = l
	resp.LogSinks = append(resp.LogSinks, l)
	return nil
}

// Fill creates the file from a complete log that open returns, instead of
// collecting it from the task log (see Open).
func (c *Copy) Fill(ctx context.Context, open func(context.Context) (io.ReadCloser, error)) error {
	l, err := wa.NewLogFile(c.Dir, c.Pattern)
	if err != nil {
		return fmt.Errorf("%s: %w", c.What, err)
	}
	c.file = l
	rc, err := open(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", c.What, err)
	}
	defer rc.Close()
	if _, err := io.Copy(l, rc); err != nil {
		return fmt.Errorf("%s: %w", c.What, err)
	}
	return nil
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
	if c.file == nil {
		return fmt.Errorf("%s: %w", c.What, errors.New("the log copy was never opened"))
	}
	size, sum, err := c.file.Finish()
	if err != nil {
		return fmt.Errorf("%s: %w", c.What, err)
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
		return fmt.Errorf("%s: upload %s: %w", c.What, a.Name, err)
	}
	return nil
}

// Cleanup implements features.Cleaner: it deletes the file. It is
// idempotent.
func (c *Copy) Cleanup(context.Context) error {
	if c.file == nil {
		return nil
	}
	return c.file.Remove()
}
