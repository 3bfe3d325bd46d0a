package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	imagefeature "go.dockerworker.dev/docker-worker/features/image"
	"go.dockerworker.dev/docker-worker/worker/diskgc"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// smallVolume mounts a 64 MiB tmpfs for the test (the worker's
// dockerVolume), unmounted when the test ends.
func smallVolume(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs for the disk test (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// task_polling_test "do not poll if diskspace threshold is reached",
// asserted through the queue: while the Docker volume lacks
// diskspaceThreshold free bytes the task stays pending (the worker checked
// several times after it was created), and once space is freed it runs.
func TestDiskThresholdHoldsClaims(t *testing.T) {
	q := startQueue(t, nil)
	cfg := q.workerConfig("disk")
	cfg.DockerVolume = smallVolume(t)
	cfg.CapacityManagement.DiskspaceThreshold = 32 << 20
	filler := filepath.Join(cfg.DockerVolume, "filler")
	if err := os.WriteFile(filler, make([]byte, 40<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	id := q.create(t, newTask(cfg, shell("echo ran", 60)))
	we := startWorker(t, q, cfg)
	for start := time.Now(); we.logs.count("garbage collection started") < 5; time.Sleep(50 * time.Millisecond) {
		if time.Since(start) > time.Minute {
			t.Fatalf("the worker did not check the disk repeatedly; log:\n%s", we.logs.String())
		}
	}
	if we.logs.count("[alert-operator] diskspace threshold reached") == 0 {
		t.Error("no diskspace alert")
	}
	s, err := q.admin.Status(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if r := s.Status.Runs; len(r) != 1 || r[0].State != tc.StatePending {
		t.Fatalf("claimed without the space: %+v", r)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	st := q.waitRun(t, id, 0, 2*time.Minute)
	wantState(t, st, 0, tc.StateCompleted, "completed")
	mustContain(t, q.logOf(t, id, 0, ""), "ran")
}

// container_garbage_collection_test: an exited task container the worker
// left behind (a crash between exit and removal) is removed once it is
// older than garbageCollection.containerExpiration; other containers are
// not touched.
func TestStaleContainerRemoved(t *testing.T) {
	dc := dockertest.Require(t)
	q := startQueue(t, nil)
	cfg := q.workerConfig("gc")
	cfg.GarbageCollection.ContainerExpiration = 0
	run := func(labels map[string]string) string {
		t.Helper()
		id, err := dc.Create(t.Context(), docker.ContainerSpec{Image: image, Cmd: []string{"true"}, Labels: labels})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { dc.Remove(t.Context(), id) })
		if err := dc.Start(t.Context(), id); err != nil {
			t.Fatal(err)
		}
		if _, err := dc.Wait(t.Context(), id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	mine := run(map[string]string{diskgc.WorkerLabel: cfg.WorkerID, "dev.dockerworker.task-id": "crashed"})
	other := run(map[string]string{diskgc.WorkerLabel: "another-worker"})
	we := startWorker(t, q, cfg)
	exists := func(id string) bool {
		cs, err := dc.ListContainers(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			if c.ID == id {
				return true
			}
		}
		return false
	}
	for start := time.Now(); exists(mine); time.Sleep(100 * time.Millisecond) {
		if time.Since(start) > time.Minute {
			t.Fatalf("the stale container is still there; log:\n%s", we.logs.String())
		}
	}
	if !exists(other) {
		t.Error("another worker's container was removed")
	}
	if we.logs.count("container removed") == 0 || we.logs.count("[alert-operator] stale container") == 0 {
		t.Errorf("no removal logged:\n%s", we.logs.String())
	}
}

// Under disk pressure an idle worker removes the images it loaded (a
// variant of the test image that no container uses), and only those: the
// test image, which it did not load, stays.
func TestDiskPressureRemovesWorkerImages(t *testing.T) {
	archive, testID := testImageArchive(t)
	archive = variantArchive(t, archive, "docker-worker-test/disk-variant:latest", strings.ToLower(t.Name()))
	dc := dockertest.Require(t)
	q := startQueue(t, nil)
	cfg := q.workerConfig("disk-images")
	cfg.DockerVolume = smallVolume(t)
	cfg.CapacityManagement.DiskspaceThreshold = 32 << 20
	startWorker(t, q, cfg)
	holder := q.publish(t, nil, published{name: "public/image.tar", body: archive})
	forgetArtifactImage(t, dc, holder, "public/image.tar")
	task := q.create(t, newTask(cfg, taskImagePayload(holder, "public/image.tar", "echo ran")))
	wantState(t, q.waitRun(t, task, 0, 2*time.Minute), 0, tc.StateCompleted, "completed")
	repo := imagefeature.ArtifactRepo(holder, "public/image.tar")
	if tags, err := dc.ListTags(t.Context(), repo); err != nil || len(tags) != 2 {
		t.Fatalf("task image tags after the run: %v %v, want latest and the sha256 tag", tags, err)
	}
	if err := os.WriteFile(filepath.Join(cfg.DockerVolume, "filler"), make([]byte, 40<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		tags, err := dc.ListTags(t.Context(), repo)
		if err != nil {
			t.Fatal(err)
		}
		if len(tags) == 0 {
			break
		}
		if time.Since(start) > time.Minute {
			t.Fatalf("task image still tagged %v under disk pressure", tags)
		}
	}
	cfgImg, err := dc.InspectImage(t.Context(), image)
	if err != nil || cfgImg.ID != testID {
		t.Errorf("the test image (not the worker's) was touched: %+v %v", cfgImg, err)
	}
}
