// Package dind is the dind payload feature: a dind-service side container
// (the worker's dindImage, docker-worker's taskcluster/dind-service) runs a
// Docker daemon for the task behind a proxy that refuses privileged
// containers, added capabilities and host mounts. The side container runs
// privileged; the proxied socket it creates in a host directory is bound
// read-only into the task container at /var/run/docker.sock, where Docker
// clients look by default.
//
// Before the task container is created the image is made present, the
// side container is created and started, and the feature waits for the
// socket (at most a minute, as docker-worker). The side container and its
// directory are removed in Cleanup, on every path.
package dind

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/taskerr"
	"go.dockerworker.dev/docker-worker/worker/tasklog"
)

// Name is the feature's key under payload.features.
const Name = "dind"

// Paths and settings of the dind-service image.
const (
	// DefaultImage is docker-worker's dindImage.
	DefaultImage = "taskcluster/dind-service:v4.0"
	// ServiceRunDir is where the service creates its socket, bound to a
	// host directory.
	ServiceRunDir = "/opt/dind-service/run"
	// SocketName is the socket's name in that directory.
	SocketName = "docker.sock"
	// TaskSocket is where the task container finds the socket.
	TaskSocket = "/var/run/docker.sock"
	// DefaultWait is how long the service may take to create its socket.
	DefaultWait = time.Minute
	// TaskLabel and RunLabel label the side container with the run it
	// serves.
	TaskLabel = "dev.dockerworker.dind.task-id"
	RunLabel  = "dev.dockerworker.dind.run-id"
)

// pollInterval is how often the socket is looked for.
const pollInterval = 100 * time.Millisecond

// removeTimeout bounds the removal of the side container.
const removeTimeout = time.Minute

// Docker is what the feature needs of the Docker client
// (*docker.Client implements it).
type Docker interface {
	EnsureImage(ctx context.Context, ref string, progress io.Writer, p docker.PullPolicy) (string, error)
	Create(ctx context.Context, spec docker.ContainerSpec) (string, error)
	Start(ctx context.Context, id string) error
	Remove(ctx context.Context, id string) error
}

// Config is what the feature is built with.
type Config struct {
	Docker Docker
	// Image is the dind-service image ("": DefaultImage).
	Image string
	// Policy is how the image is pulled.
	Policy docker.PullPolicy
	// TempDir holds the per-task socket directories ("": the system
	// default).
	TempDir string
	// Wait is how long the socket may take to appear (0: DefaultWait).
	Wait time.Duration
	// Now is the clock for task log lines (nil: time.Now).
	Now func() time.Time
}

// Feature is the dind feature.
type Feature struct{ cfg Config }

var _ features.Feature = (*Feature)(nil)

// New returns the feature. It has no side effects.
func New(cfg Config) *Feature {
	if cfg.Image == "" {
		cfg.Image = DefaultImage
	}
	if cfg.Wait <= 0 {
		cfg.Wait = DefaultWait
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Feature{cfg: cfg}
}

// Name implements features.Feature.
func (f *Feature) Name() string { return Name }

// NewTask implements features.Feature.
func (f *Feature) NewTask(t features.Task) (features.TaskFeature, error) {
	if f.cfg.Docker == nil {
		return nil, errors.New("dind: the worker has no Docker client")
	}
	return &task{cfg: f.cfg, t: t}, nil
}

type task struct {
	cfg Config
	t   features.Task

	dir         string // the host directory holding the socket ("": none)
	containerID string // the side container ("": none)
}

var (
	_ features.Preparer = (*task)(nil)
	_ features.Cleaner  = (*task)(nil)
)

// SideContainerSpec is the dind-service container of a run for a socket
// directory: privileged, the TCP port switched off, the run directory
// bound to dir, labelled with the run.
func SideContainerSpec(image, dir, taskID string, runID int) docker.ContainerSpec {
	return docker.ContainerSpec{
		Image:      image,
		Env:        []string{"PORT="},
		Privileged: true,
		Binds:      []string{dir + ":" + ServiceRunDir},
		Labels:     map[string]string{TaskLabel: taskID, RunLabel: strconv.Itoa(runID)},
	}
}

// Prepare implements features.Preparer: it starts the side container and
// binds its socket into the task container.
func (k *task) Prepare(ctx context.Context, _ *features.PrepareRequest, resp *features.PrepareResponse) error {
	k.logf("Starting the Docker-in-Docker service (%s)", k.cfg.Image)
	if _, err := k.cfg.Docker.EnsureImage(ctx, k.cfg.Image, k.t.Log(), k.cfg.Policy); err != nil {
		return taskerr.ResourceUnavailable(fmt.Errorf("dind: image %s: %w", k.cfg.Image, err))
	}
	dir, err := os.MkdirTemp(k.cfg.TempDir, "dind-")
	if err != nil {
		return taskerr.InternalError(fmt.Errorf("dind: socket directory: %w", err))
	}
	k.dir = dir
	spec := SideContainerSpec(k.cfg.Image, dir, k.t.TaskID(), k.t.RunID())
	// The worker's labels let a restarted worker remove a side container
	// a killed one left.
	maps.Copy(spec.Labels, k.t.Worker().ContainerLabels)
	id, err := k.cfg.Docker.Create(ctx, spec)
	if err != nil {
		return taskerr.InternalError(fmt.Errorf("dind: create the service container: %w", err))
	}
	k.containerID = id
	if err := k.cfg.Docker.Start(ctx, id); err != nil {
		return taskerr.InternalError(fmt.Errorf("dind: start the service container: %w", err))
	}
	socket := filepath.Join(dir, SocketName)
	if err := waitFor(ctx, socket, k.cfg.Wait); err != nil {
		return taskerr.InternalError(fmt.Errorf("dind: failed to initialize dind-service waiting for socket: %w", err))
	}
	resp.Mounts = append(resp.Mounts, features.Mount{Source: socket, Target: TaskSocket, ReadOnly: true})
	return nil
}

// waitFor waits until path exists, for at most d.
func waitFor(ctx context.Context, path string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no %s after %v: %w", path, d, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// Cleanup implements features.Cleaner: the side container and the socket
// directory are removed. It is idempotent.
func (k *task) Cleanup(ctx context.Context) error {
	var errs []error
	if k.containerID != "" {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), removeTimeout)
		err := k.cfg.Docker.Remove(rctx, k.containerID)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("dind: remove the service container: %w", err))
		} else {
			k.containerID = ""
		}
	}
	if k.dir != "" {
		if err := os.RemoveAll(k.dir); err != nil {
			errs = append(errs, fmt.Errorf("dind: remove the socket directory: %w", err))
		} else {
			k.dir = ""
		}
	}
	return errors.Join(errs...)
}

func (k *task) logf(format string, args ...any) {
	_, _ = io.WriteString(k.t.Log(), tasklog.InfoLine(k.cfg.Now(), fmt.Sprintf(format, args...)))
}
