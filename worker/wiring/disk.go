package wiring

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/features/image"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/diskgc"
	"go.dockerworker.dev/docker-worker/worker/docker"
)

// diskExtension puts the disk check and garbage collector before every
// claim; the collector asks it which runs are in progress.
type diskExtension struct {
	c      *diskgc.Collector
	runs   atomic.Pointer[features.Runs]
	adopt  func(ctx context.Context) error
	logger *slog.Logger
}

var _ features.Extension = (*diskExtension)(nil)

func (e *diskExtension) Init(_ context.Context, h features.Host) error {
	runs := h.Runs()
	e.runs.Store(&runs)
	h.BeforeClaim(e.c.Allow)
	h.BeforeFirstClaim(func(ctx context.Context) error {
		if err := e.adopt(ctx); err != nil {
			e.logger.Warn("garbage collection warning", "error", fmt.Errorf("find task images of earlier runs: %w", err))
		}
		return nil
	})
	return nil
}

// active reports whether the worker holds run taskID/runID.
func (e *diskExtension) active(taskID, runID string) bool {
	runs := e.runs.Load()
	if runs == nil {
		return false
	}
	for _, r := range (*runs).List() {
		if r.TaskID == taskID && strconv.Itoa(r.RunID) == runID {
			return true
		}
	}
	return false
}

// newDiskCollector builds the collector for cfg; dockerVolume "" is the
// daemon's data directory.
func newDiskExtension(ctx context.Context, cfg *config.Config, dc *docker.Client, opts Options, images *diskgc.Images, sources ...diskgc.Source) (*diskExtension, error) {
	volume := cfg.DockerVolume
	if volume == "" {
		root, err := dc.DataRoot(ctx)
		if err != nil {
			return nil, fmt.Errorf("dockerVolume: %w", err)
		}
		volume = root
	}
	e := &diskExtension{
		adopt:  func(ctx context.Context) error { return adoptTaskImages(ctx, dc, images) },
		logger: opts.Logger,
	}
	e.c = diskgc.New(diskgc.Config{
		Volume:              volume,
		Threshold:           cfg.CapacityManagement.DiskspaceThreshold,
		Capacity:            cfg.Capacity,
		WorkerID:            cfg.WorkerID,
		ContainerExpiration: time.Duration(cfg.GarbageCollection.ContainerExpiration) * time.Millisecond,
		ImageExpiration:     time.Duration(cfg.GarbageCollection.ImageExpiration) * time.Millisecond,
		Logger:              opts.Logger.With("component", "diskgc"),
		Active:              e.active,
	}, dc, images, sources...)
	return e, nil
}

// trackedImages records in the collector's table the images the worker
// pulls or loads, and each later use of them; an image that was already
// present when a task asked for it is not the worker's and is never
// recorded.
type trackedImages struct {
	image.Docker
	images *diskgc.Images
}

func (t trackedImages) EnsureImage(ctx context.Context, ref string, progress io.Writer, p docker.PullPolicy) (string, error) {
	_, err := t.Docker.InspectImage(ctx, ref)
	present := err == nil
	id, err := t.Docker.EnsureImage(ctx, ref, progress, p)
	if err == nil {
		if present {
			t.images.Touch(id, time.Now())
		} else {
			t.images.Used(id, ref, time.Now())
		}
	}
	return id, err
}

func (t trackedImages) LoadImage(ctx context.Context, r io.Reader, ref string) (string, error) {
	id, err := t.Docker.LoadImage(ctx, r, ref)
	if err == nil {
		t.images.Used(id, ref, time.Now())
	}
	return id, err
}

// TagImage records the worker's own tag (a task image's sha256 tag).
func (t trackedImages) TagImage(ctx context.Context, id, ref string) error {
	err := t.Docker.TagImage(ctx, id, ref)
	if err == nil {
		t.images.Used(id, ref, time.Now())
	}
	return err
}

func (t trackedImages) InspectImage(ctx context.Context, ref string) (docker.ImageConfig, error) {
	cfg, err := t.Docker.InspectImage(ctx, ref)
	if err == nil {
		t.images.Touch(cfg.ID, time.Now())
	}
	return cfg, err
}

// adoptTaskImages records the task images a previous worker process
// loaded (found by their repository), last used when they were made, so
// that they are collected like the images this process loads.
func adoptTaskImages(ctx context.Context, dc *docker.Client, images *diskgc.Images) error {
	found, err := dc.ImagesMatching(ctx, image.ArtifactRepository+"/*")
	if err != nil {
		return err
	}
	for _, img := range found {
		for _, ref := range img.Tags {
			if strings.HasPrefix(ref, image.ArtifactRepository+"/") {
				images.Used(img.ID, ref, img.Created)
			}
		}
	}
	return nil
}
