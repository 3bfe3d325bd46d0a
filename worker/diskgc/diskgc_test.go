package diskgc

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"go.dockerworker.dev/docker-worker/worker/docker"
)

// world is a fake disk and Docker daemon: removing things frees their size.
type world struct {
	mu          sync.Mutex
	free        int64
	containers  map[string]docker.ContainerState
	sizes       map[string]int64 // by container ID, image ID or candidate name
	inUse       map[string]bool
	removed     []string
	refsRemoved []string
}

func (w *world) ListContainers(_ context.Context, labels map[string]string) ([]docker.ContainerState, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []docker.ContainerState
	for _, c := range w.containers {
		if c.Labels[WorkerLabel] == labels[WorkerLabel] {
			out = append(out, c)
		}
	}
	return out, nil
}

func (w *world) gone(id string) {
	w.free += w.sizes[id]
	w.removed = append(w.removed, id)
}

func (w *world) Remove(_ context.Context, id string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.containers, id)
	w.gone(id)
	return nil
}

func (w *world) ImagesInUse(context.Context) (map[string]bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.inUse, nil
}

// RemoveImage removes a reference; refs are "<image id>:<tag>" here, each
// image has one, and its space is freed with it.
func (w *world) RemoveImage(_ context.Context, ref string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.refsRemoved = append(w.refsRemoved, ref)
	id, _, _ := strings.Cut(ref, ":")
	w.gone(id)
	return nil
}

func (w *world) freeSpace(string) (int64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.free, nil
}

func (w *world) removals() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.removed...)
}

// caches is a Source of cache instances in the world.
type caches struct {
	w     *world
	items map[string]time.Time
}

func (c *caches) Candidates(context.Context) ([]Candidate, error) {
	var out []Candidate
	for name, t := range c.items {
		out = append(out, Candidate{What: name, LastUsed: t, Remove: func(context.Context) error {
			c.w.mu.Lock()
			defer c.w.mu.Unlock()
			c.w.gone(name)
			return nil
		}})
	}
	return out, nil
}

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func exited(id, worker string, finished time.Time) docker.ContainerState {
	return docker.ContainerState{ID: id, State: "exited", Labels: map[string]string{WorkerLabel: worker}, FinishedAt: finished}
}

func newCollector(w *world, images *Images, logs *bytes.Buffer, now *time.Time, sources ...Source) *Collector {
	return New(Config{
		Volume: "/var/lib/docker", Threshold: 100, Capacity: 2, WorkerID: "me",
		ContainerExpiration: 30 * time.Minute, ImageExpiration: 2 * time.Hour,
		Logger:    slog.New(slog.NewTextHandler(logs, nil)),
		FreeSpace: w.freeSpace,
		Now:       func() time.Time { return *now },
	}, w, images, sources...)
}

func TestEnoughSpaceRemovesNothingFresh(t *testing.T) {
	now := t0
	w := &world{free: 1000, containers: map[string]docker.ContainerState{"c1": exited("c1", "me", t0.Add(-time.Minute))}}
	var logs bytes.Buffer
	c := newCollector(w, &Images{}, &logs, &now)
	if n, reason := c.Allow(t.Context(), 2); n != 2 || reason != "" {
		t.Errorf("Allow = %d %q", n, reason)
	}
	if got := w.removals(); len(got) != 0 {
		t.Errorf("removed %v with enough space and nothing expired", got)
	}
}

// Under pressure: exited task containers first (only the worker's), then
// images and caches least recently used first, until there is enough.
func TestFreesInOrderUntilEnough(t *testing.T) {
	now := t0
	w := &world{
		free: 50,
		containers: map[string]docker.ContainerState{
			"mine":   exited("mine", "me", t0.Add(-time.Minute)),
			"other":  exited("other", "someone-else", t0.Add(-time.Hour)),
			"runner": {ID: "runner", State: "running", Labels: map[string]string{WorkerLabel: "me"}},
		},
		sizes: map[string]int64{"mine": 10, "other": 1000, "runner": 1000, "img-old": 30, "cache-mid": 40, "img-new": 500, "img-used": 1000},
		inUse: map[string]bool{"img-used": true},
	}
	images := &Images{}
	images.Used("img-old", "img-old:latest", t0.Add(-3*time.Minute))
	images.Used("img-new", "img-new:latest", t0.Add(-time.Minute))
	images.Used("img-used", "img-used:latest", t0.Add(-time.Hour))
	var logs bytes.Buffer
	c := newCollector(w, images, &logs, &now, &caches{w: w, items: map[string]time.Time{"cache-mid": t0.Add(-2 * time.Minute)}})
	// Idle (want == capacity): images are candidates. Need 200.
	if n, reason := c.Allow(t.Context(), 2); n != 2 || reason != "" {
		t.Errorf("Allow = %d %q, want 2", n, reason)
	}
	if diff := cmp.Diff([]string{"mine", "img-old", "cache-mid", "img-new"}, w.removals()); diff != "" {
		t.Errorf("removal order (-want +got):\n%s", diff)
	}
	for _, want := range []string{"garbage collection started", "garbage collection finished", "container removed", "image removed"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

// With a task running, images are left alone (a task may be between its
// image and its container); caches and containers still go.
func TestBusyWorkerKeepsImages(t *testing.T) {
	now := t0
	w := &world{free: 0, sizes: map[string]int64{"img": 1000, "cache": 50}}
	images := &Images{}
	images.Used("img", "img:latest", t0.Add(-10*time.Hour))
	var logs bytes.Buffer
	c := newCollector(w, images, &logs, &now, &caches{w: w, items: map[string]time.Time{"cache": t0}})
	n, reason := c.Allow(t.Context(), 1) // capacity 2, one running
	if n != 0 || !strings.Contains(reason, "diskspace threshold reached") {
		t.Errorf("Allow = %d %q, want 0 and the reason", n, reason)
	}
	if diff := cmp.Diff([]string{"cache"}, w.removals()); diff != "" {
		t.Errorf("removed (-want +got):\n%s", diff)
	}
}

// When nothing helps, the allowance is what the free space covers, and
// the operator alert is logged at most once a minute.
func TestAllowanceAndAlert(t *testing.T) {
	now := t0
	w := &world{free: 150}
	var logs bytes.Buffer
	c := newCollector(w, &Images{}, &logs, &now)
	for range 3 {
		if n, _ := c.Allow(t.Context(), 2); n != 1 {
			t.Errorf("Allow = %d, want 1 (150 bytes free, 100 per task)", n)
		}
	}
	if n := strings.Count(logs.String(), "[alert-operator] diskspace threshold reached"); n != 1 {
		t.Errorf("%d alerts within a minute, want 1", n)
	}
	now = now.Add(time.Minute)
	c.Allow(t.Context(), 2)
	if n := strings.Count(logs.String(), "[alert-operator] diskspace threshold reached"); n != 2 {
		t.Errorf("%d alerts after a minute, want 2", n)
	}
	w.mu.Lock()
	w.free = 1000
	w.mu.Unlock()
	if n, reason := c.Allow(t.Context(), 2); n != 2 || reason != "" {
		t.Errorf("after space was freed: %d %q", n, reason)
	}
}

// Without pressure, expired containers and (when idle) expired images are
// swept at most once an interval; fresh ones and images in use stay.
func TestExpirySweep(t *testing.T) {
	now := t0
	w := &world{
		free: 1 << 40,
		containers: map[string]docker.ContainerState{
			"old":   exited("old", "me", t0.Add(-31*time.Minute)),
			"young": exited("young", "me", t0.Add(-29*time.Minute-30*time.Second)),
		},
		inUse: map[string]bool{"img-old-used": true},
	}
	images := &Images{}
	images.Used("img-old", "img-old:latest", t0.Add(-3*time.Hour))
	images.Used("img-old-used", "img-old-used:latest", t0.Add(-3*time.Hour))
	images.Used("img-fresh", "img-fresh:latest", t0.Add(-time.Hour))
	var logs bytes.Buffer
	c := newCollector(w, images, &logs, &now)
	c.Allow(t.Context(), 2)
	if diff := cmp.Diff([]string{"old", "img-old"}, w.removals()); diff != "" {
		t.Errorf("swept (-want +got):\n%s", diff)
	}
	if !strings.Contains(logs.String(), "[alert-operator] stale container") {
		t.Error("no stale container alert")
	}
	// Within the interval nothing is swept, even what expired meanwhile.
	now = t0.Add(45 * time.Second) // young has been stopped 30m15s
	c.Allow(t.Context(), 2)
	if got := w.removals(); len(got) != 2 {
		t.Errorf("swept again within the interval: %v", got)
	}
	now = t0.Add(61 * time.Second)
	c.Allow(t.Context(), 2)
	if got := w.removals(); len(got) != 3 || got[2] != "young" {
		t.Errorf("after the interval: %v", got)
	}
}

// The real seam: the Docker client satisfies the collector's interface.
var _ Docker = (*docker.Client)(nil)

// An exited container of a run still in progress (copying artifacts out of
// it) is never removed, even under pressure.
func TestActiveRunsContainerKept(t *testing.T) {
	now := t0
	c1 := exited("c1", "me", t0.Add(-time.Hour))
	c1.Labels[TaskLabel], c1.Labels[RunLabel] = "T", "0"
	w := &world{free: 0, containers: map[string]docker.ContainerState{"c1": c1}}
	var logs bytes.Buffer
	c := newCollector(w, &Images{}, &logs, &now)
	c.cfg.Active = func(task, run string) bool { return task == "T" && run == "0" }
	c.Allow(t.Context(), 1)
	if got := w.removals(); len(got) != 0 {
		t.Errorf("removed %v of a run in progress", got)
	}
}

func TestImagesTouchOnlyRecorded(t *testing.T) {
	var m Images
	m.Touch("found-present", t0)
	m.Used("pulled", "busybox:1", t0)
	m.Used("pulled", "busybox:1", t0)
	m.Used("pulled", "mirror/busybox:1", t0)
	m.Touch("pulled", t0.Add(time.Hour))
	m.Touch("pulled", t0) // older: ignored
	got := m.list()
	if len(got) != 1 || got[0].id != "pulled" || !got[0].lastUsed.Equal(t0.Add(time.Hour)) ||
		!slices.Equal(got[0].refs, []string{"busybox:1", "mirror/busybox:1"}) {
		t.Errorf("images %+v", got)
	}
}
