// Package bulklog is the payload feature "bulkLog": the whole task log is
// gzip-compressed as it is written and uploaded, once complete, as
// public/logs/terminal_bulk.log.gz (gzip content-encoding), as
// docker-worker did. docker-worker shipped the feature disabled in its
// worker config, and so does this worker (features.bulkLog.enabled turns
// it on); payloads then ask for it with features.bulkLog.
package bulklog

import (
	"context"
	"fmt"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/features/internal/logcopy"
)

// Name is the feature's payload key.
const Name = "bulkLog"

// ArtifactName is the bulk log artifact.
const ArtifactName = "public/logs/terminal_bulk.log.gz"

// ContentType is the bulk log's content type.
const ContentType = "text/plain; charset=utf-8"

// Feature is the bulk log feature.
type Feature struct{ tempDir string }

var (
	_ features.Feature         = (*Feature)(nil)
	_ features.WorkerDefaulter = (*Feature)(nil)
)

// New returns the feature; tempDir holds the per-task files ("" for the
// system default).
func New(tempDir string) *Feature { return &Feature{tempDir: tempDir} }

// Name implements features.Feature.
func (f *Feature) Name() string { return Name }

// EnabledByDefault implements features.WorkerDefaulter: off unless the
// worker config enables it.
func (f *Feature) EnabledByDefault() bool { return false }

// NewTask implements features.Feature.
func (f *Feature) NewTask(t features.Task) (features.TaskFeature, error) {
	return &task{t: t, dir: f.tempDir}, nil
}

type task struct {
	t   features.Task
	dir string
	log *logcopy.Copy
}

var (
	_ features.Opener   = (*task)(nil)
	_ features.Finisher = (*task)(nil)
	_ features.Cleaner  = (*task)(nil)
)

func (k *task) Open(_ context.Context, _ *features.OpenRequest, resp *features.OpenResponse) error {
	l, err := logcopy.Open(k.dir, "bulk-log-*.gz", resp)
	if err != nil {
		return fmt.Errorf("bulk log: %w", err)
	}
	k.log = l
	return nil
}

// Finish uploads the bulk log.
func (k *task) Finish(ctx context.Context, _ *features.FinishRequest) error {
	if err := k.log.Upload(ctx, k.t.Artifacts(), logcopy.Artifact{
		Name: ArtifactName, ContentType: ContentType, Expires: k.t.Expires(),
	}); err != nil {
		return fmt.Errorf("bulk log: %w", err)
	}
	return nil
}

func (k *task) Cleanup(context.Context) error { return k.log.Remove() }
