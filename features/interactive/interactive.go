// Package interactive is the payload feature "interactive": a shell into
// the running task container over a websocket, speaking the protocol of
// the npm package docker-exec-websocket-server v3 (see [MsgStdin] and the
// other message types), so the Taskcluster UI's shell page works with it.
//
// The worker serves every task's socket from one server of its own (see
// [Server]) at wss://<host>:<port>/<token>/shell.sock, the token fresh and
// unguessable for each task; once the container started, the reference
// artifact <artifactName>shell.html points at
// <rootUrl>/shell/?v=1&socketUrl=...&taskId=...&runId=....
//
// Each connection runs one process (the query's command parameters, with
// a terminal when tty=true) through docker exec. So that users can still
// connect after the task's command ended, the container's entrypoint is
// wrapped: once the command exits, the wrapper (the image's /bin/sh) waits
// while a hold file the worker bind-mounts exists, then exits with the
// command's status. The worker keeps the file for minTime after the
// container started, while any session is open, and for
// expirationAfterSession after the last one closed.
package interactive

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/worker/taskerr"
)

// Name is the feature's payload key.
const Name = "interactive"

// ContentType is the shell artifact's content type.
const ContentType = "text/html"

// DefaultArtifactPrefix is where the shell artifact goes by default.
const DefaultArtifactPrefix = "private/docker-worker/"

// ShellArtifact is the shell artifact's name below the prefix.
const ShellArtifact = "shell.html"

// MountPoint is where the hold directory appears in the container.
const MountPoint = "/.taskclusterinteractive"

// holdFile is the hold file's name in the hold directory.
const holdFile = "hold"

// wrapperScript runs the task's command ("$@"), then waits while the hold
// file exists and exits with the command's status.
const wrapperScript = `"$@"
status=$?
while [ -e ` + MountPoint + `/` + holdFile + ` ]; do sleep 1; done
exit $status`

// Config configures the feature.
type Config struct {
	// MinTime is how long the container is kept after it started.
	MinTime time.Duration
	// ExpirationAfterSession is how long it is kept after the last session
	// closed.
	ExpirationAfterSession time.Duration
	// ArtifactPrefix is prepended to "shell.html" (default
	// DefaultArtifactPrefix).
	ArtifactPrefix string
	// TempDir holds the per-task hold directories ("" for the system
	// default).
	TempDir string
	// Server is how the shell server listens; it is started with the
	// first task that uses the feature.
	Server ServerConfig
	// MaxSessions bounds a task's concurrent sessions (0: DefaultMaxSessions).
	MaxSessions int
}

// Feature is the interactive feature.
type Feature struct {
	cfg    Config
	docker Execer

	mu     sync.Mutex
	srv    *Server
	srvErr error
}

var (
	_ features.Feature   = (*Feature)(nil)
	_ features.Owner     = (*Feature)(nil)
	_ features.Extension = (*Feature)(nil)
)

// errClosed is the server error after Close.
var errClosed = errors.New("the worker is stopping")

// Init implements features.Extension: the shell server, if it started,
// closes when the worker stops immediately (ctx is done); open sessions are
// told the server shut down.
func (f *Feature) Init(ctx context.Context, _ features.Host) error {
	context.AfterFunc(ctx, func() { _ = f.Close() })
	return nil
}

// New returns the feature; d runs the sessions' processes (nil: the
// feature can only be listed, as `docker-worker validate` does).
func New(cfg Config, d Execer) *Feature {
	if cfg.ArtifactPrefix == "" {
		cfg.ArtifactPrefix = DefaultArtifactPrefix
	}
	return &Feature{cfg: cfg, docker: d}
}

// Name implements features.Feature.
func (f *Feature) Name() string { return Name }

// Owns implements features.Owner: nothing beyond features.interactive.
func (f *Feature) Owns() []string { return nil }

// Close stops the shell server, if it started; it does not start again.
func (f *Feature) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	srv := f.srv
	f.srv, f.srvErr = nil, errClosed
	if srv == nil {
		return nil
	}
	return srv.Close()
}

// server starts the shell server on first use.
func (f *Feature) server() (*Server, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.srv == nil && f.srvErr == nil {
		f.srv, f.srvErr = StartServer(f.cfg.Server)
	}
	return f.srv, f.srvErr
}

// NewTask implements features.Feature.
func (f *Feature) NewTask(t features.Task) (features.TaskFeature, error) {
	if f.docker == nil {
		return nil, errors.New("interactive: no Docker client")
	}
	return &task{f: f, t: t}, nil
}

type task struct {
	f     *Feature
	t     features.Task
	dir   string
	hold  *hold
	srv   *Server
	token string
}

var (
	_ features.Preparer = (*task)(nil)
	_ features.Starter  = (*task)(nil)
	_ features.Cleaner  = (*task)(nil)
)

// Prepare starts the server, creates the hold directory and wraps the
// entrypoint.
func (k *task) Prepare(_ context.Context, _ *features.PrepareRequest, resp *features.PrepareResponse) error {
	srv, err := k.f.server()
	if err != nil {
		return taskerr.InternalError(fmt.Errorf("interactive shell server: %w", err))
	}
	k.srv = srv
	dir, err := os.MkdirTemp(k.f.cfg.TempDir, "interactive-")
	if err != nil {
		return taskerr.InternalError(fmt.Errorf("interactive: %w", err))
	}
	k.dir = dir
	if err := os.Chmod(dir, 0o755); err != nil {
		return taskerr.InternalError(fmt.Errorf("interactive: %w", err))
	}
	k.hold = newHold(filepath.Join(dir, holdFile), k.f.cfg.ExpirationAfterSession)
	// Held from the start, so a command that ends at once still waits
	// for minTime (counted from Started).
	k.hold.start(24 * time.Hour)
	resp.Mounts = append(resp.Mounts, features.Mount{Source: dir, Target: MountPoint, ReadOnly: true})
	resp.Entrypoint = []string{"/bin/sh", "-c", wrapperScript, "interactive-wrapper"}
	resp.WrapImageEntrypoint = true
	return nil
}

// Started registers the container with the server and publishes the shell
// artifact.
func (k *task) Started(ctx context.Context, req *features.StartedRequest) error {
	k.hold.start(k.f.cfg.MinTime)
	h := k.hold
	k.token = k.srv.Add(&Target{
		ContainerID: req.ContainerID,
		Docker:      k.f.docker,
		MaxSessions: k.f.cfg.MaxSessions,
		Opened:      h.opened,
		Closed:      h.closed,
	})
	host := k.t.Worker().Hostname
	if host == "" {
		host = "localhost"
	}
	socketURL := k.srv.URL(host, k.token)
	name := k.f.cfg.ArtifactPrefix + ShellArtifact
	link := ShellURL(k.t.Worker().RootURL, socketURL, k.t.TaskID(), k.t.RunID())
	if err := k.t.Artifacts().Reference(ctx, name, link, ContentType, ArtifactExpiry(time.Now(), k.t)); err != nil {
		return fmt.Errorf("interactive shell artifact: %w", err)
	}
	k.t.Logger().Debug("interactive shell", "artifact", name, "socket", socketURL)
	return nil
}

// ShellURL is the address of the Taskcluster UI's shell page for socketURL.
func ShellURL(rootURL, socketURL, taskID string, runID int) string {
	return rootURL + "/shell/?v=1&socketUrl=" + url.QueryEscape(socketURL) +
		"&taskId=" + url.QueryEscape(taskID) + "&runId=" + strconv.Itoa(runID)
}

// ArtifactExpiry is when the shell artifact expires: maxRunTime (seconds)
// after now, but not after the task expires.
func ArtifactExpiry(now time.Time, t features.Task) time.Time {
	exp := t.Expires()
	if p := t.Payload(); p != nil {
		if e := now.Add(time.Duration(p.MaxRunTime) * time.Second); exp.IsZero() || e.Before(exp) {
			exp = e
		}
	}
	return exp
}

// Cleanup ends the sessions, releases the container and removes the hold
// directory.
func (k *task) Cleanup(context.Context) error {
	var errs []error
	if k.token != "" {
		k.srv.Drop(k.token)
		k.token = ""
	}
	if k.hold != nil {
		errs = append(errs, k.hold.stop())
		k.hold = nil
	}
	if k.dir != "" {
		errs = append(errs, os.RemoveAll(k.dir))
		k.dir = ""
	}
	return errors.Join(errs...)
}
