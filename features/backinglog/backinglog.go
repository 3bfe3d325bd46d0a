// Package backinglog is the always-on built-in feature that keeps the whole
// task log in a file while the task runs and, once the log is complete,
// uploads it as the backing log artifact (public/logs/live_backing.log,
// gzip-encoded, text/plain; charset=utf-8) and points the live log artifact
// (public/logs/live.log) at it with a link. Both names follow payload.log,
// as in docker-worker.
package backinglog

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strings"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/features/internal/logcopy"
	"go.dockerworker.dev/docker-worker/schemas"
)

// Name is the feature's name in worker logs.
const Name = "backingLog"

const contentType = "text/plain; charset=utf-8"

// Feature is the backing log built-in.
type Feature struct {
	// TempDir holds the per-task log files ("" for the system default).
	TempDir string
}

var (
	_ features.Feature   = (*Feature)(nil)
	_ features.AlwaysOn  = (*Feature)(nil)
	_ features.Recoverer = (*Feature)(nil)
)

// New returns the feature; tempDir may be empty.
func New(tempDir string) *Feature { return &Feature{TempDir: tempDir} }

// Name implements features.Feature.
func (f *Feature) Name() string { return Name }

// AlwaysOn implements features.AlwaysOn: every task gets a log.
func (f *Feature) AlwaysOn() bool { return true }

// NewTask implements features.Feature.
func (f *Feature) NewTask(t features.Task) (features.TaskFeature, error) {
	return &task{t: t, Copy: logcopy.Copy{What: "task log", Dir: f.TempDir, Pattern: "task-log-*.log.gz"}}, nil
}

// task embeds the log copy, which opens and cleans up.
type task struct {
	logcopy.Copy
	t features.Task
}

var (
	_ features.Opener   = (*task)(nil)
	_ features.Finisher = (*task)(nil)
	_ features.Cleaner  = (*task)(nil)
)

// Names returns the live log and backing log artifact names for payload.log
// value logName ("" means the default): `<dir>/<base>_backing<ext>`.
func Names(logName string) (live, backing string) {
	if logName == "" {
		logName = schemas.DefaultLog
	}
	dir, file := path.Split(logName)
	ext := path.Ext(file)
	return logName, dir + strings.TrimSuffix(file, ext) + "_backing" + ext
}

// logName is payload.log, read leniently when the payload did not validate
// so a malformed task's log still goes where its author asked.
func (k *task) logName() string {
	if p := k.t.Payload(); p != nil {
		return p.Log
	}
	var def struct {
		Payload struct {
			Log any `json:"log"`
		} `json:"payload"`
	}
	if json.Unmarshal(k.t.Definition(), &def) == nil {
		if s, ok := def.Payload.Log.(string); ok {
			return s
		}
	}
	return ""
}

func (k *task) Finish(ctx context.Context, _ *features.FinishRequest) error {
	live, backing := Names(k.logName())
	pub := k.t.Artifacts()
	if err := k.Upload(ctx, pub, logcopy.Artifact{Name: backing, ContentType: contentType, Expires: k.t.Expires()}); err != nil {
		return err
	}
	if err := pub.Link(ctx, live, backing, k.t.Expires()); err != nil {
		return fmt.Errorf("link live log: %w", err)
	}
	return nil
}

// Recover implements features.Recoverer: it uploads the log a killed
// worker process left, under the names the task asked for.
func (f *Feature) Recover(ctx context.Context, r features.RecoveredRun) error {
	c := logcopy.Copy{What: "recovered task log", Dir: f.TempDir, Pattern: "task-log-*.log.gz"}
	if err := c.Fill(ctx, r.OpenLog); err != nil {
		return err
	}
	defer c.Cleanup(ctx)
	live, backing := Names(r.PayloadLog)
	if err := c.Upload(ctx, r.Artifacts, logcopy.Artifact{Name: backing, ContentType: contentType, Expires: r.Expires}); err != nil {
		return err
	}
	if err := r.Artifacts.Link(ctx, live, backing, r.Expires); err != nil {
		return fmt.Errorf("link live log: %w", err)
	}
	return nil
}
