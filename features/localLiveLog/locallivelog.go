// Package locallivelog is the payload feature "localLiveLog" (on by
// default): the task log is served live by the worker's own HTTP server
// (worker/livelog) at /log/<token>, with a fresh unguessable token per task,
// and while the task runs its live log artifact (public/logs/live.log, or
// payload.log) is a reference artifact to that URL on the worker's
// configured hostname. Once the log is complete the stream ends; the
// always-on backing log feature then uploads the log and turns the live log
// artifact into a link to it, as docker-worker did.
//
// Unlike docker-worker there is no side container: one server in the worker
// process serves every task's stream.
package locallivelog

import (
	"context"
	"errors"
	"fmt"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/schemas"
	"go.dockerworker.dev/docker-worker/worker/livelog"
)

// Name is the feature's payload key.
const Name = "localLiveLog"

// ContentType is the live log reference artifact's content type.
const ContentType = "text/plain; charset=utf-8"

// Feature is the live log feature.
type Feature struct {
	srv     *livelog.Server
	tempDir string
	// down says why the server could not start (secure live logging with
	// an unusable certificate): the worker then claims nothing.
	down string
}

var (
	_ features.Feature   = (*Feature)(nil)
	_ features.Defaulter = (*Feature)(nil)
	_ features.Extension = (*Feature)(nil)
)

// New returns the feature serving through srv; tempDir holds the per-task
// stream files ("" for the system default).
func New(srv *livelog.Server, tempDir string) *Feature {
	return &Feature{srv: srv, tempDir: tempDir}
}

// Down returns the feature for a worker whose live log server cannot serve
// (logging.secureLiveLogging with a certificate that cannot be loaded):
// as docker-worker did, such a worker claims no tasks at all, so that no
// task's log is served insecurely; reason is logged when claiming stops.
func Down(reason string) *Feature { return &Feature{down: reason} }

// Init implements features.Extension: a feature that is down holds the
// claim loop at zero.
func (f *Feature) Init(_ context.Context, h features.Host) error {
	if f.down != "" {
		h.BeforeClaim(func(context.Context, int) (int, string) { return 0, f.down })
	}
	return nil
}

// Name implements features.Feature.
func (f *Feature) Name() string { return Name }

// DefaultEnabled implements features.Defaulter.
func (f *Feature) DefaultEnabled() bool { return true }

// NewTask implements features.Feature.
func (f *Feature) NewTask(t features.Task) (features.TaskFeature, error) {
	if f.srv == nil {
		return nil, errors.New("the live log server is not running")
	}
	return &task{f: f, t: t}, nil
}

type task struct {
	f      *Feature
	t      features.Task
	stream *livelog.Stream
	token  string
}

var (
	_ features.Opener   = (*task)(nil)
	_ features.Preparer = (*task)(nil)
	_ features.Finisher = (*task)(nil)
	_ features.Cleaner  = (*task)(nil)
)

// Open starts the task's stream and registers it with the server.
func (k *task) Open(_ context.Context, _ *features.OpenRequest, resp *features.OpenResponse) error {
	s, err := livelog.NewStream(k.f.tempDir)
	if err != nil {
		return fmt.Errorf("live log: %w", err)
	}
	k.stream = s
	k.token = k.f.srv.Add(s)
	resp.LogSinks = append(resp.LogSinks, s)
	return nil
}

// URL is where the task's live log is served.
func (k *task) URL() string {
	host := k.t.Worker().Hostname
	if host == "" {
		host = "localhost"
	}
	return k.f.srv.URL(host, k.token)
}

// Prepare publishes the live log artifact as a reference to the stream.
func (k *task) Prepare(ctx context.Context, _ *features.PrepareRequest, _ *features.PrepareResponse) error {
	name := schemas.DefaultLog
	if p := k.t.Payload(); p != nil && p.Log != "" {
		name = p.Log
	}
	if err := k.t.Artifacts().Reference(ctx, name, k.URL(), ContentType, k.t.Expires()); err != nil {
		return fmt.Errorf("live log artifact: %w", err)
	}
	k.t.Logger().Debug("live log", "artifact", name, "url", k.URL())
	return nil
}

// Finish ends the stream: the log is complete.
func (k *task) Finish(context.Context, *features.FinishRequest) error {
	if k.stream != nil {
		return k.stream.Close()
	}
	return nil
}

// Cleanup unregisters and removes the stream; readers still attached read
// to its end.
func (k *task) Cleanup(context.Context) error {
	if k.stream == nil {
		return nil
	}
	k.f.srv.Drop(k.token)
	err := k.stream.Remove()
	k.stream = nil
	return err
}
