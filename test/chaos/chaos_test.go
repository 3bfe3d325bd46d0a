package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
)

// A small chaos run under the test command: a dozen tasks, three SIGKILLs,
// faults between worker and queue and a short outage; every count of the
// report must be zero.
func TestChaos(t *testing.T) {
	dockertest.Require(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "docker-worker")
	if out, err := exec.Command("go", "build", "-o", bin, "go.dockerworker.dev/docker-worker/cmd/docker-worker").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	seed := uint64(time.Now().UnixNano())
	var log strings.Builder
	rep, err := Run(t.Context(), Options{
		Tasks: 12, Kills: 3, Capacity: 3, Seed: seed, Faults: true, Outage: 2 * time.Second,
		MaxTaskTime: 2 * time.Second, Timeout: 8 * time.Minute,
		Bin: bin, Image: dockertest.Image, Dir: dir, Log: &log,
	})
	if err != nil {
		t.Fatalf("seed %d: %v\n%s", seed, err, log.String())
	}
	t.Logf("\n%s", rep.Table())
	if rep.Kills != 3 {
		t.Errorf("%d kills, want 3", rep.Kills)
	}
	if !rep.OK() {
		t.Errorf("seed %d: problems:\n%s\n%s", seed, strings.Join(rep.Problems, "\n"), log.String())
		for _, p := range []string{"worker-0.log", "worker-1.log", "worker-2.log", "worker-3.log"} {
			if b, err := exec.Command("tail", "-n", "40", filepath.Join(dir, p)).Output(); err == nil {
				t.Logf("%s:\n%s", p, b)
			}
		}
	}
}
