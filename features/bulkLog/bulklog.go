// Package bulklog is the payload feature "bulkLog": the whole task log is
// gzip-compressed as it is written and uploaded, once complete, as
// public/logs/terminal_bulk.log.gz (gzip content-encoding), as
// docker-worker did. docker-worker shipped the feature disabled in its
// worker config; payloads turn it on with features.bulkLog.
package bulklog

import (
	"context"
	"errors"
	"fmt"

	"go.dockerworker.dev/docker-worker/features"
	wa "go.dockerworker.dev/docker-worker/worker/artifacts"
)

// Name is the feature's payload key.
const Name = "bulkLog"

// ArtifactName is the bulk log artifact.
const ArtifactName = "public/logs/terminal_bulk.log.gz"

// ContentType is the bulk log's content type.
const ContentType = "text/plain; charset=utf-8"

// Feature is the bulk log feature.
type Feature struct{ tempDir string }

var _ features.Feature = (*Feature)(nil)

// New returns the feature; tempDir holds the per-task files ("" for the
// system default).
func New(tempDir string) *Feature { return &Feature{tempDir: tempDir} }

// Name implements features.Feature.
func (f *Feature) Name() string { return Name }

// NewTask implements features.Feature.
func (f *Feature) NewTask(t features.Task) (features.TaskFeature, error) {
	return &task{t: t, dir: f.tempDir}, nil
}

type task struct {
	t   features.Task
	dir string
	log *wa.LogFile
}

var (
	_ features.Opener   = (*task)(nil)
	_ features.Finisher = (*task)(nil)
	_ features.Cleaner  = (*task)(nil)
)

func (k *task) Open(_ context.Context, _ *features.OpenRequest, resp *features.OpenResponse) error {
	l, err := wa.NewLogFile(k.dir, "bulk-log-*.gz")
	if err != nil {
		return fmt.Errorf("bulk log: %w", err)
	}
	k.log = l
	resp.LogSinks = append(resp.LogSinks, l)
	return nil
}

// Finish uploads the compressed log.
func (k *task) Finish(ctx context.Context, _ *features.FinishRequest) error {
	if k.log == nil {
		return errors.New("bulk log was never opened")
	}
	size, _, err := k.log.Finish()
	if err != nil {
		return fmt.Errorf("bulk log: %w", err)
	}
	if err := k.t.Artifacts().Upload(ctx, features.Upload{
		Name:            ArtifactName,
		ContentType:     ContentType,
		ContentEncoding: "gzip",
		Expires:         k.t.Expires(),
		Size:            size,
		Open:            k.log.Open,
	}); err != nil {
		return fmt.Errorf("upload bulk log: %w", err)
	}
	return nil
}

func (k *task) Cleanup(context.Context) error {
	if k.log == nil {
		return nil
	}
	return k.log.Remove()
}
