// Package backinglog is the always-on built-in feature that keeps the whole
// task log in a file while the task runs and, once the log is complete,
// uploads it as the backing log artifact (public/logs/live_backing.log,
// gzip-encoded, text/plain; charset=utf-8) and points the live log artifact
// (public/logs/live.log) at it with a link. Both names follow payload.log,
// as in docker-worker.
package backinglog

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"go.dockerworker.dev/docker-worker/features"
)

// Name is the feature's name in worker logs.
const Name = "backingLog"

// DefaultLiveLog is the live log artifact name when payload.log is not set.
const DefaultLiveLog = "public/logs/live.log"

const contentType = "text/plain; charset=utf-8"

// gzipOSUnix is the gzip header OS byte docker-worker's artifacts carry.
const gzipOSUnix = 3

// Feature is the backing log built-in.
type Feature struct {
	// TempDir holds the per-task log files ("" for the system default).
	TempDir string
}

var (
	_ features.Feature  = (*Feature)(nil)
	_ features.AlwaysOn = (*Feature)(nil)
)

// New returns the feature; tempDir may be empty.
func New(tempDir string) *Feature { return &Feature{TempDir: tempDir} }

// Name implements features.Feature.
func (f *Feature) Name() string { return Name }

// AlwaysOn implements features.AlwaysOn: every task gets a log.
func (f *Feature) AlwaysOn() bool { return true }

// NewTask implements features.Feature.
func (f *Feature) NewTask(t features.Task) (features.TaskFeature, error) {
	return &task{t: t, dir: f.TempDir}, nil
}

type task struct {
	t    features.Task
	dir  string
	file *os.File
}

var (
	_ features.Opener   = (*task)(nil)
	_ features.Finisher = (*task)(nil)
	_ features.Cleaner  = (*task)(nil)
)

func (k *task) Open(_ context.Context, _ *features.OpenRequest, resp *features.OpenResponse) error {
	f, err := os.CreateTemp(k.dir, "task-log-*.log")
	if err != nil {
		return fmt.Errorf("create task log file: %w", err)
	}
	k.file = f
	resp.LogSinks = append(resp.LogSinks, f)
	return nil
}

// Names returns the live log and backing log artifact names for payload.log
// value logName ("" means the default): `<dir>/<base>_backing<ext>`.
func Names(logName string) (live, backing string) {
	if logName == "" {
		logName = DefaultLiveLog
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
	if k.file == nil {
		return errors.New("task log was never opened")
	}
	gz, size, err := k.compress()
	if err != nil {
		return err
	}
	defer os.Remove(gz)
	live, backing := Names(k.logName())
	pub := k.t.Artifacts()
	if err := pub.Upload(ctx, features.Upload{
		Name:            backing,
		ContentType:     contentType,
		ContentEncoding: "gzip",
		Expires:         k.t.Expires(),
		Size:            size,
		Open:            func() (io.ReadCloser, error) { return os.Open(gz) },
	}); err != nil {
		return fmt.Errorf("upload task log: %w", err)
	}
	if err := pub.Link(ctx, live, backing, k.t.Expires()); err != nil {
		return fmt.Errorf("link live log: %w", err)
	}
	return nil
}

// compress gzips the log file into a sibling file and returns its path and size.
func (k *task) compress() (string, int64, error) {
	if _, err := k.file.Seek(0, io.SeekStart); err != nil {
		return "", 0, fmt.Errorf("rewind task log: %w", err)
	}
	out, err := os.CreateTemp(k.dir, "task-log-*.log.gz")
	if err != nil {
		return "", 0, fmt.Errorf("create compressed log: %w", err)
	}
	zw := gzip.NewWriter(out)
	zw.OS = gzipOSUnix
	_, err = io.Copy(zw, k.file)
	err = errors.Join(err, zw.Close())
	var size int64
	if err == nil {
		size, err = out.Seek(0, io.SeekCurrent)
	}
	err = errors.Join(err, out.Close())
	if err != nil {
		os.Remove(out.Name())
		return "", 0, fmt.Errorf("compress task log: %w", err)
	}
	return out.Name(), size, nil
}

func (k *task) Cleanup(context.Context) error {
	if k.file == nil {
		return nil
	}
	name := k.file.Name()
	err := k.file.Close()
	k.file = nil
	if errors.Is(err, os.ErrClosed) {
		err = nil
	}
	return errors.Join(err, os.Remove(name))
}
