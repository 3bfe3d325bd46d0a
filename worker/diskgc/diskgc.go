// Package diskgc keeps a worker's disk in bounds. Before every claim the
// worker asks a [Collector] how many tasks it may take: the Docker volume
// must have diskspaceThreshold bytes free per task. When it has not, the
// collector removes what the worker itself left behind, in order: exited
// task containers, then task images and unmounted cache instances, least
// recently used first; when that is not enough it lowers the number of
// tasks to claim (to none) and raises docker-worker's operator alert.
// Independently of disk space, exited task containers older than
// containerExpiration and images unused for imageExpiration are removed.
//
// It removes only what the worker created: containers carrying the
// worker's label, images the worker pulled or loaded (recorded in an
// [Images] table), and cache instances offered by a [Source]. It never
// removes an image a container uses, and considers images only while no
// task runs (a task between its image and its container would otherwise
// lose the image). Used by worker/wiring, which adapts it to the
// features.Extension hooks.
package diskgc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"go.dockerworker.dev/docker-worker/worker/docker"
)

// Labels the runner puts on every task container.
const (
	WorkerLabel = "dev.dockerworker.worker-id"
	TaskLabel   = "dev.dockerworker.task-id"
	RunLabel    = "dev.dockerworker.run-id"
	// StateLabel is the identity of the worker's state directory.
	StateLabel = "dev.dockerworker.state-id"
)

// Docker is what the collector needs of the Docker client.
type Docker interface {
	ListContainers(ctx context.Context, labels map[string]string) ([]docker.ContainerState, error)
	Remove(ctx context.Context, id string) error
	ImagesInUse(ctx context.Context) (map[string]bool, error)
	// RemoveImage removes the reference ref (Docker deletes the image when
	// no reference is left); a missing one is not an error.
	RemoveImage(ctx context.Context, ref string) error
}

// Candidate is something the collector may remove to free space.
type Candidate struct {
	// What names it in the log ("image sha256:…", "cache volume x/y").
	What     string
	LastUsed time.Time
	Remove   func(ctx context.Context) error
}

// Source offers candidates, e.g. the unmounted cache instances.
type Source interface {
	Candidates(ctx context.Context) ([]Candidate, error)
}

// Config configures a Collector.
type Config struct {
	// Volume is the filesystem whose free space is checked (dockerVolume).
	Volume string
	// Threshold is the free space needed per task to claim.
	Threshold int64
	// Capacity is the worker's capacity: a before-claim request for all of
	// it means no task runs.
	Capacity int
	// WorkerID selects the worker's own containers.
	WorkerID string
	// ContainerExpiration and ImageExpiration: see the package doc.
	ContainerExpiration time.Duration
	ImageExpiration     time.Duration
	// Interval is the least time between two sweeps when there is enough
	// space (0: one minute).
	Interval time.Duration
	Logger   *slog.Logger
	// Active reports whether the run taskID/runID is still in progress:
	// its container is the runner's to remove, whatever its state (nil:
	// no run is).
	Active func(taskID, runID string) bool
	// FreeSpace returns the free bytes of a path (nil: statfs).
	FreeSpace func(path string) (int64, error)
	Now       func() time.Time
}

// Collector is the before-claim disk check and garbage collector. Its
// methods are safe for concurrent use.
type Collector struct {
	cfg     Config
	docker  Docker
	images  *Images
	sources []Source

	mu        sync.Mutex
	lastSweep time.Time
	lastAlert time.Time
}

// New returns a collector removing through d, images recorded in images,
// and the candidates of sources.
func New(cfg Config, d Docker, images *Images, sources ...Source) *Collector {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.FreeSpace == nil {
		cfg.FreeSpace = freeSpace
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Minute
	}
	return &Collector{cfg: cfg, docker: d, images: images, sources: sources}
}

// Allow is the before-claim check: how many of want tasks the disk allows,
// and why fewer. It sweeps what has expired at most once an Interval, and
// frees space at once when there is too little.
func (c *Collector) Allow(ctx context.Context, want int) (int, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	idle := want >= c.cfg.Capacity
	now := c.cfg.Now()
	if now.Sub(c.lastSweep) >= c.cfg.Interval {
		c.lastSweep = now
		c.sweepExpired(ctx, idle)
	}
	need := c.cfg.Threshold * int64(want)
	free, err := c.cfg.FreeSpace(c.cfg.Volume)
	if err != nil {
		c.cfg.Logger.Error("[alert-operator] cannot read free disk space; claiming nothing", "volume", c.cfg.Volume, "error", err)
		return 0, fmt.Sprintf("cannot read the free space of %s", c.cfg.Volume)
	}
	if free >= need {
		return want, ""
	}
	c.cfg.Logger.Info("garbage collection started", "volume", c.cfg.Volume, "free", free, "needed", need)
	free = c.freeUp(ctx, idle, need, free)
	c.cfg.Logger.Info("garbage collection finished", "volume", c.cfg.Volume, "free", free)
	if free >= need {
		return want, ""
	}
	allow := 0
	if c.cfg.Threshold > 0 {
		allow = int(min(free/c.cfg.Threshold, int64(want)))
	}
	if now.Sub(c.lastAlert) >= time.Minute {
		c.lastAlert = now
		c.cfg.Logger.Warn("[alert-operator] diskspace threshold reached", "volume", c.cfg.Volume,
			"free", free, "threshold", c.cfg.Threshold, "wanted", want, "allowed", allow)
	}
	return allow, fmt.Sprintf("diskspace threshold reached: %d bytes free on %s, %d needed per task", free, c.cfg.Volume, c.cfg.Threshold)
}

// sweepExpired removes exited containers past containerExpiration and, when
// idle, images unused for imageExpiration.
func (c *Collector) sweepExpired(ctx context.Context, idle bool) {
	now := c.cfg.Now()
	for _, s := range c.exitedContainers(ctx) {
		if now.Sub(s.FinishedAt) >= c.cfg.ContainerExpiration {
			c.cfg.Logger.Warn("[alert-operator] stale container", "container", s.ID, "finishedAt", s.FinishedAt)
			c.removeContainer(ctx, s.ID)
		}
	}
	if !idle || c.images == nil {
		return
	}
	for _, cand := range c.imageCandidates(ctx) {
		if now.Sub(cand.LastUsed) >= c.cfg.ImageExpiration {
			c.remove(ctx, cand)
		}
	}
}

// freeUp removes candidates until free reaches need or nothing is left;
// it returns the free space after.
func (c *Collector) freeUp(ctx context.Context, idle bool, need, free int64) int64 {
	recheck := func() int64 {
		if f, err := c.cfg.FreeSpace(c.cfg.Volume); err == nil {
			return f
		}
		return free
	}
	for _, s := range c.exitedContainers(ctx) {
		c.removeContainer(ctx, s.ID)
	}
	if free = recheck(); free >= need {
		return free
	}
	var cands []Candidate
	if idle && c.images != nil {
		cands = append(cands, c.imageCandidates(ctx)...)
	}
	for _, src := range c.sources {
		cs, err := src.Candidates(ctx)
		if err != nil {
			c.cfg.Logger.Warn("garbage collection warning", "error", err)
			continue
		}
		cands = append(cands, cs...)
	}
	slices.SortStableFunc(cands, func(a, b Candidate) int { return a.LastUsed.Compare(b.LastUsed) })
	for _, cand := range cands {
		if free >= need {
			break
		}
		c.remove(ctx, cand)
		free = recheck()
	}
	return free
}

func (c *Collector) remove(ctx context.Context, cand Candidate) {
	if err := cand.Remove(ctx); err != nil {
		c.cfg.Logger.Warn("garbage collection warning", "what", cand.What, "error", err)
		return
	}
	c.cfg.Logger.Info("removed", "what", cand.What, "lastUsed", cand.LastUsed)
}

// exitedContainers are the worker's task containers that are not running
// and whose run is over (a run in progress may be copying artifacts out of
// its exited container).
func (c *Collector) exitedContainers(ctx context.Context) []docker.ContainerState {
	cs, err := c.docker.ListContainers(ctx, map[string]string{WorkerLabel: c.cfg.WorkerID})
	if err != nil {
		c.cfg.Logger.Warn("garbage collection warning", "error", err)
		return nil
	}
	return slices.DeleteFunc(cs, func(s docker.ContainerState) bool {
		return s.Running() || s.State == "created" ||
			(c.cfg.Active != nil && c.cfg.Active(s.Labels[TaskLabel], s.Labels[RunLabel]))
	})
}

func (c *Collector) removeContainer(ctx context.Context, id string) {
	if err := c.docker.Remove(ctx, id); err != nil {
		c.cfg.Logger.Warn("container removal error", "container", id, "error", err)
		return
	}
	c.cfg.Logger.Info("container removed", "container", id)
}

// imageCandidates are the recorded images no container uses.
func (c *Collector) imageCandidates(ctx context.Context) []Candidate {
	inUse, err := c.docker.ImagesInUse(ctx)
	if err != nil {
		c.cfg.Logger.Warn("garbage collection warning", "error", err)
		return nil
	}
	var out []Candidate
	for _, img := range c.images.list() {
		if inUse[img.id] {
			continue
		}
		out = append(out, Candidate{What: "image " + img.id, LastUsed: img.lastUsed, Remove: func(ctx context.Context) error {
			for _, ref := range img.refs {
				if err := c.docker.RemoveImage(ctx, ref); err != nil {
					return err
				}
			}
			c.images.forget(img.id)
			c.cfg.Logger.Info("image removed", "image", img.id, "refs", img.refs)
			return nil
		}})
	}
	return out
}

// Images records the images the worker pulled or loaded, under which
// references, and when a task last used each. Only those references are
// ever removed: an image that also carries someone else's tag keeps it.
// Safe for concurrent use; the zero value is ready.
type Images struct {
	mu   sync.Mutex
	byID map[string]*imageUse
}

type imageUse struct {
	id       string
	refs     []string
	lastUsed time.Time
}

// Used records that the worker pulled or loaded image id as ref (or added
// the tag ref to it) and that a task used it at t.
func (m *Images) Used(id, ref string, t time.Time) {
	if id == "" || ref == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.byID == nil {
		m.byID = map[string]*imageUse{}
	}
	u := m.byID[id]
	if u == nil {
		u = &imageUse{id: id}
		m.byID[id] = u
	}
	if !slices.Contains(u.refs, ref) {
		u.refs = append(u.refs, ref)
	}
	if t.After(u.lastUsed) {
		u.lastUsed = t
	}
}

// Touch records a use of image id at t if the worker pulled or loaded it
// (an image it found present is not recorded).
func (m *Images) Touch(id string, t time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if u, ok := m.byID[id]; ok && t.After(u.lastUsed) {
		u.lastUsed = t
	}
}

func (m *Images) forget(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.byID, id)
}

func (m *Images) list() []imageUse {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]imageUse, 0, len(m.byID))
	for _, u := range m.byID {
		out = append(out, imageUse{id: u.id, refs: slices.Clone(u.refs), lastUsed: u.lastUsed})
	}
	slices.SortFunc(out, func(a, b imageUse) int { return cmp.Or(a.lastUsed.Compare(b.lastUsed), cmp.Compare(a.id, b.id)) })
	return out
}

// errUnsupported is the free-space error on systems without statfs.
var errUnsupported = errors.New("free space is only known on Linux")
