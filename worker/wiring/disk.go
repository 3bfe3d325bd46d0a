package wiring

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/diskgc"
	"go.dockerworker.dev/docker-worker/worker/docker"
)

// diskExtension puts the disk check and garbage collector before every
// claim; the collector asks it which runs are in progress.
type diskExtension struct {
	c    *diskgc.Collector
	runs atomic.Pointer[features.Runs]
}

var _ features.Extension = (*diskExtension)(nil)

func (e *diskExtension) Init(_ context.Context, h features.Host) error {
	runs := h.Runs()
	e.runs.Store(&runs)
	h.BeforeClaim(e.c.Allow)
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
	e := &diskExtension{}
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
