package wiring

import (
	"context"
	"os"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/cache"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
	"go.dockerworker.dev/docker-worker/worker/slugid"
)

// A previous process's holder counts as alive while a container with its
// run's labels runs, and no longer once it stopped.
func TestRunContainerRuns(t *testing.T) {
	dc := dockertest.Require(t)
	h := cache.Holder{TaskID: slugid.Nice(), RunID: 2, WorkerID: "w-wiring-test"}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	id, err := dc.Create(ctx, docker.ContainerSpec{Image: dockertest.Image, Cmd: []string{"sleep", "600"},
		Labels: map[string]string{"dev.dockerworker.task-id": h.TaskID, "dev.dockerworker.run-id": "2", "dev.dockerworker.worker-id": h.WorkerID}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dc.Remove(context.WithoutCancel(ctx), id) })
	alive := runContainerRuns(dc)
	check := func(h cache.Holder, want bool) {
		t.Helper()
		got, err := alive(ctx, h)
		if err != nil || got != want {
			t.Errorf("alive(%+v) = %v, %v; want %v", h, got, err, want)
		}
	}
	check(h, false) // created, never started
	if err := dc.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	check(h, true)
	check(cache.Holder{TaskID: h.TaskID, RunID: 1, WorkerID: h.WorkerID}, false)
	check(cache.Holder{TaskID: h.TaskID, RunID: 2, WorkerID: "another-worker"}, false)
	if err := dc.Kill(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := dc.Wait(ctx, id); err != nil {
		t.Fatal(err)
	}
	check(h, false)
}

// The crash check finds the Docker client behind the image recorder
// featureList gets, and there is none for the inert list.
func TestListerOf(t *testing.T) {
	var dc *docker.Client
	if listerOf(nil) != nil || listerOf(dc) != nil || listerOf(trackedImages{}) != nil {
		t.Error("a container lister without a Docker client")
	}
	dc = &docker.Client{}
	if listerOf(trackedImages{Docker: dc}) != dc || listerOf(dc) != dc {
		t.Error("the Docker client behind the image recorder was not found")
	}
}

// The disk collector is offered the free instances of the wired cache
// feature, and removes them.
func TestCacheSources(t *testing.T) {
	cfg := config.Default()
	cfg.Cache.VolumeCachePath = t.TempDir()
	srcs := cacheSources(inertFeatures(cfg))
	if len(srcs) != 1 {
		t.Fatalf("%d sources, want 1", len(srcs))
	}
	m := srcs[0].(cacheSource).m
	free, err := m.Acquire(t.Context(), "free", cache.Holder{TaskID: "t1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := free.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	held, err := m.Acquire(t.Context(), "held", cache.Holder{TaskID: "t2"})
	if err != nil {
		t.Fatal(err)
	}
	cands, err := srcs[0].Candidates(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(cands) != 1 || cands[0].What != "cache volume free/"+free.ID || cands[0].LastUsed.IsZero() {
		t.Fatalf("candidates %+v, want the free instance", cands)
	}
	if err := cands[0].Remove(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(free.Path); !os.IsNotExist(err) {
		t.Errorf("free instance still there: %v", err)
	}
	if _, err := os.Stat(held.Path); err != nil {
		t.Errorf("held instance: %v", err)
	}
}
