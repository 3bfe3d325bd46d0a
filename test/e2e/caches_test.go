package e2e

// Ports of docker-worker's container_volume_caching_test: volume caches on
// a real dockerd, through a worker built as the binary builds it.

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/cache"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
	"go.dockerworker.dev/docker-worker/worker/localqueue"
	"go.dockerworker.dev/docker-worker/worker/slugid"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// cacheConfig is a worker config whose caches live in a fresh directory.
func cacheConfig(t *testing.T, q *queueEnv, workerType string) *config.Config {
	t.Helper()
	cfg := q.workerConfig(workerType)
	cfg.Cache.VolumeCachePath = t.TempDir()
	return cfg
}

// withScopes is def with the task scopes given.
func withScopes(def task, scopes ...string) task {
	def["scopes"] = scopes
	return def
}

// cacheInstances lists the instance directories of cache name.
func cacheInstances(t *testing.T, cfg *config.Config, name string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(cfg.Cache.VolumeCachePath, name))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, filepath.Join(cfg.Cache.VolumeCachePath, name, e.Name()))
		}
	}
	return out
}

// waitLogged waits until the worker logged msg n times.
func (we *workerEnv) waitLogged(t *testing.T, msg string, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for we.logs.count(msg) < n {
		if time.Now().After(deadline) {
			t.Fatalf("the worker logged %q %d times, want %d", msg, we.logs.count(msg), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mount cached volume in docker worker; cached volumes can be reused
// between tasks.
func TestCacheMountedAndReused(t *testing.T) {
	q := startQueue(t, nil)
	cfg := cacheConfig(t, q, "cache-mount")
	we := startWorker(t, q, cfg)
	const name = "docker-worker-garbage-caches-tmp-obj-dir"
	p := shell(`echo "foo" > /tmp-obj-dir/foo.txt`, 60)
	p["cache"] = map[string]string{name: "/tmp-obj-dir"}
	first := q.create(t, withScopes(newTask(cfg, p), "docker-worker:cache:"+name))
	wantState(t, q.waitRun(t, first, 0, 2*time.Minute), 0, tc.StateCompleted, "completed")
	mustContain(t, q.logOf(t, first, 0, ""), name)

	dirs := cacheInstances(t, cfg, name)
	if len(dirs) != 1 {
		t.Fatalf("instances %v, want one", dirs)
	}
	if b, err := os.ReadFile(filepath.Join(dirs[0], "foo.txt")); err != nil || string(b) != "foo\n" {
		t.Fatalf("foo.txt on the host: %q, %v", b, err)
	}
	we.waitLogged(t, "cache volume release", 1, 30*time.Second)

	p2 := shell(`cat /tmp-obj-dir/foo.txt`, 60)
	p2["cache"] = map[string]string{name: "/tmp-obj-dir"}
	second := q.create(t, withScopes(newTask(cfg, p2), "docker-worker:cache:"+name+":"+cfg.ProvisionerID+"/"+cfg.WorkerType))
	wantState(t, q.waitRun(t, second, 0, 2*time.Minute), 0, tc.StateCompleted, "completed")
	mustContain(t, q.logOf(t, second, 0, ""), "foo\r\n")
	if got := cacheInstances(t, cfg, name); len(got) != 1 {
		t.Errorf("instances %v, want the one reused", got)
	}
	if we.logs.count("cache volume hit") != 1 {
		t.Error("no cache hit logged")
	}
}

// task unsuccesful when insufficient cache scope is provided.
func TestCacheInsufficientScope(t *testing.T) {
	q := startQueue(t, nil)
	cfg := cacheConfig(t, q, "cache-scope")
	startWorker(t, q, cfg)
	const name = "docker-worker-garbage-caches-tmp-obj-dir"
	p := shell(`echo "foo" > /tmp-obj-dir/foo.txt`, 60)
	p["cache"] = map[string]string{name: "/tmp-obj-dir"}
	id := q.create(t, withScopes(newTask(cfg, p), "docker-worker:cache:1"))
	wantState(t, q.waitRun(t, id, 0, 2*time.Minute), 0, tc.StateFailed, "failed")
	mustContain(t, q.logOf(t, id, 0, ""), "Insufficient scopes to attach cache volumes.")
	if _, err := os.Stat(filepath.Join(cfg.Cache.VolumeCachePath, name)); !os.IsNotExist(err) {
		t.Errorf("cache directory created: %v", err)
	}
}

// task unsuccesful when invalid cache name is requested.
func TestCacheInvalidName(t *testing.T) {
	q := startQueue(t, nil)
	cfg := cacheConfig(t, q, "cache-badname")
	startWorker(t, q, cfg)
	name := "docker-worker-garbage-caches-tmp-obj-dir::-" + time.Now().Format("150405")
	p := shell(`echo "foo" > /tmp-obj-dir/foo.txt`, 60)
	p["cache"] = map[string]string{name: "/tmp-obj-dir"}
	id := q.create(t, withScopes(newTask(cfg, p), "docker-worker:cache:"+name))
	wantState(t, q.waitRun(t, id, 0, 2*time.Minute), 0, tc.StateFailed, "failed")
	mustContain(t, q.logOf(t, id, 0, ""), "Invalid key name was provided")
	if entries, _ := os.ReadDir(cfg.Cache.VolumeCachePath); len(entries) != 0 {
		t.Errorf("created %v", entries)
	}
}

// empty cache does not throw: cache {}, null and no cache run.
func TestCacheEmpty(t *testing.T) {
	q := startQueue(t, nil)
	cfg := cacheConfig(t, q, "cache-empty")
	startWorker(t, q, cfg)
	for _, v := range []any{map[string]string{}, json.RawMessage("null"), nil} {
		p := shell("true", 60)
		if v != nil {
			p["cache"] = v
		}
		id := q.create(t, newTask(cfg, p))
		wantState(t, q.waitRun(t, id, 0, 2*time.Minute), 0, tc.StateCompleted, "completed")
	}
}

// purge cache based on exit status.
func TestCachePurgeOnExitStatus(t *testing.T) {
	q := startQueue(t, nil)
	cfg := cacheConfig(t, q, "cache-exitpurge")
	we := startWorker(t, q, cfg)
	const name = "docker-worker-garbage-caches-purge-exit"
	p := shell(`echo "foo" > /tmp-obj-dir/foo.txt; exit 36`, 60)
	p["cache"] = map[string]string{name: "/tmp-obj-dir"}
	p["onExitStatus"] = map[string]any{"purgeCaches": []int{36}}
	for i := range 2 {
		id := q.create(t, withScopes(newTask(cfg, p), "docker-worker:cache:"+name))
		wantState(t, q.waitRun(t, id, 0, 2*time.Minute), 0, tc.StateFailed, "failed")
		we.waitLogged(t, "cache volume removed", i+1, 30*time.Second)
		if dirs := cacheInstances(t, cfg, name); len(dirs) != 0 {
			t.Errorf("task %d: instances left %v", i, dirs)
		}
	}
	if we.logs.count("cache volume hit") != 0 {
		t.Error("a purged instance was reused")
	}
}

// An exit code not listed keeps the cache.
func TestCacheKeptOnOtherExitStatus(t *testing.T) {
	q := startQueue(t, nil)
	cfg := cacheConfig(t, q, "cache-exitkeep")
	startWorker(t, q, cfg)
	const name = "keep-on-exit"
	p := shell(`echo "foo" > /c/foo.txt; exit 1`, 60)
	p["cache"] = map[string]string{name: "/c"}
	p["onExitStatus"] = map[string]any{"purgeCaches": []int{36}}
	id := q.create(t, withScopes(newTask(cfg, p), "docker-worker:cache:"+name))
	wantState(t, q.waitRun(t, id, 0, 2*time.Minute), 0, tc.StateFailed, "failed")
	if dirs := cacheInstances(t, cfg, name); len(dirs) != 1 {
		t.Errorf("instances %v, want one kept", dirs)
	}
}

// A cache written before a worker restart is seen by a task after it.
func TestCacheSurvivesWorkerRestart(t *testing.T) {
	q := startQueue(t, nil)
	cfg := cacheConfig(t, q, "cache-restart")
	const name = "survives-restart"
	we := startWorker(t, q, cfg)
	p := shell(`echo "before restart" > /c/file`, 60)
	p["cache"] = map[string]string{name: "/c"}
	first := q.create(t, withScopes(newTask(cfg, p), "docker-worker:cache:"+name))
	wantState(t, q.waitRun(t, first, 0, 2*time.Minute), 0, tc.StateCompleted, "completed")
	we.waitLogged(t, "cache volume release", 1, 30*time.Second)
	we.stop()
	select {
	case err := <-we.done:
		we.done <- err // for the test's own clean-up
	case <-time.After(time.Minute):
		t.Fatal("the first worker did not stop")
	}

	we2 := startWorker(t, q, cfg)
	p2 := shell(`cat /c/file`, 60)
	p2["cache"] = map[string]string{name: "/c"}
	second := q.create(t, withScopes(newTask(cfg, p2), "docker-worker:cache:"+name))
	wantState(t, q.waitRun(t, second, 0, 2*time.Minute), 0, tc.StateCompleted, "completed")
	mustContain(t, q.logOf(t, second, 0, ""), "before restart\r\n")
	if we2.logs.count("cache volume hit") != 1 {
		t.Errorf("no cache hit after the restart:\n%s", we2.logs.String())
	}
}

// An instance a crashed worker process left held is not handed out while
// the container of that run still runs, and is reused once it stopped.
func TestCacheHeldByCrashedWorker(t *testing.T) {
	dc := dockertest.Require(t)
	q := startQueue(t, nil)
	cfg := cacheConfig(t, q, "cache-crash")
	const name = "crashed"

	// What a worker that crashed mid-task leaves: the instance's state
	// names the run, whose container runs on.
	crashed := cache.Holder{TaskID: slugid.Nice(), RunID: 0, WorkerID: cfg.WorkerID}
	l, err := cache.New(cache.Config{Dir: cfg.Cache.VolumeCachePath}).Acquire(t.Context(), name, crashed)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.Path, "marker"), []byte("left by the crashed task\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	id, err := dc.Create(ctx, docker.ContainerSpec{Image: image, Cmd: []string{"sleep", "600"},
		Binds: []string{l.Path + ":/c"},
		Labels: map[string]string{"dev.dockerworker.task-id": crashed.TaskID, "dev.dockerworker.run-id": "0",
			"dev.dockerworker.worker-id": crashed.WorkerID}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dc.Remove(context.WithoutCancel(ctx), id) })
	if err := dc.Start(ctx, id); err != nil {
		t.Fatal(err)
	}

	startWorker(t, q, cfg)
	p := shell(`ls /c; test ! -e /c/marker`, 60)
	p["cache"] = map[string]string{name: "/c"}
	first := q.create(t, withScopes(newTask(cfg, p), "docker-worker:cache:"+name))
	wantState(t, q.waitRun(t, first, 0, 2*time.Minute), 0, tc.StateCompleted, "completed")

	if err := dc.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
	p2 := shell(`cat /c/marker`, 60)
	p2["cache"] = map[string]string{name: "/c"}
	second := q.create(t, withScopes(newTask(cfg, p2), "docker-worker:cache:"+name))
	wantState(t, q.waitRun(t, second, 0, 2*time.Minute), 0, tc.StateCompleted, "completed")
	mustContain(t, q.logOf(t, second, 0, ""), "left by the crashed task\r\n")
}

// garbage_collection_test "clear volume cache when diskspace threshold
// reached": a free instance is removed when the Docker volume lacks
// space, and the next task gets a new one.
func TestCacheRemovedWhenDiskIsShort(t *testing.T) {
	q := startQueue(t, nil)
	cfg := q.workerConfig("cache-disk")
	cfg.DockerVolume = smallVolume(t)
	cfg.Cache.VolumeCachePath = filepath.Join(cfg.DockerVolume, "caches")
	cfg.CapacityManagement.DiskspaceThreshold = 32 << 20
	we := startWorker(t, q, cfg)
	const name = "big"
	p := shell(`dd if=/dev/zero of=/c/big bs=1048576 count=40 2>/dev/null; ls -l /c`, 60)
	p["cache"] = map[string]string{name: "/c"}
	first := q.create(t, withScopes(newTask(cfg, p), "docker-worker:cache:"+name))
	wantState(t, q.waitRun(t, first, 0, 2*time.Minute), 0, tc.StateCompleted, "completed")
	// The instance may already be gone: the next claim's disk check
	// follows at once.
	misses := we.logs.records("cache volume miss")
	if len(misses) != 1 {
		t.Fatalf("%d cache misses logged", len(misses))
	}
	filled, _ := misses[0]["path"].(string)

	p2 := shell(`test ! -e /c/big`, 60)
	p2["cache"] = map[string]string{name: "/c"}
	second := q.create(t, withScopes(newTask(cfg, p2), "docker-worker:cache:"+name))
	wantState(t, q.waitRun(t, second, 0, 2*time.Minute), 0, tc.StateCompleted, "completed")
	if _, err := os.Stat(filled); filled == "" || !os.IsNotExist(err) {
		t.Errorf("the filled instance is still there: %v", err)
	}
	if we.logs.count("cache volume removed") != 1 {
		t.Errorf("no cache removal logged:\n%s", we.logs.String())
	}
}

// purge cache before run task: after purgeCache.purgeCache, the next
// claim removes the instance and the task gets a new one.
func TestCachePurgeRequestBeforeRun(t *testing.T) {
	q := startQueue(t, nil)
	cfg := cacheConfig(t, q, "cache-purgereq")
	cfg.Cache.PurgeRequestInterval = 0
	we := startWorker(t, q, cfg)
	const name = "docker-worker-garbage-caches-purge"
	p := shell(`echo "foo" > /c/foo.txt`, 60)
	p["cache"] = map[string]string{name: "/c"}
	first := q.create(t, withScopes(newTask(cfg, p), "docker-worker:cache:"+name))
	wantState(t, q.waitRun(t, first, 0, 2*time.Minute), 0, tc.StateCompleted, "completed")
	we.waitLogged(t, "cache volume release", 1, 30*time.Second)
	old := cacheInstances(t, cfg, name)
	if len(old) != 1 {
		t.Fatalf("instances %v", old)
	}

	if err := q.admin.PurgeCache(t.Context(), cfg.ProvisionerID+"/"+cfg.WorkerType, name); err != nil {
		t.Fatal(err)
	}
	p2 := shell(`test ! -e /c/foo.txt`, 60)
	p2["cache"] = map[string]string{name: "/c"}
	second := q.create(t, withScopes(newTask(cfg, p2), "docker-worker:cache:"+name))
	wantState(t, q.waitRun(t, second, 0, 2*time.Minute), 0, tc.StateCompleted, "completed")
	if we.logs.count("cache volume removed") != 1 {
		t.Errorf("no removal logged")
	}
	if _, err := os.Stat(old[0]); !os.IsNotExist(err) {
		t.Errorf("purged instance still there: %v", err)
	}
}

// mount cached volume in docker worker using role: the task holds the
// cache scope only through a role (with a trailing *). The worker's own
// client may not expand scopes: the anonymous role's auth:expand-scopes
// serves.
func TestCacheScopeThroughRole(t *testing.T) {
	const workerClient, workerToken = "cache-worker", "cache-worker-secret"
	q := startQueue(t, func(c *localqueue.Config) {
		c.Roles = append(c.Roles, localqueue.Role{RoleID: "project:cache-users", Scopes: []string{"docker-worker:cache:role-*"}})
		c.Clients = append(c.Clients, localqueue.Client{ClientID: workerClient, AccessToken: workerToken,
			Scopes: []string{"queue:claim-work:null-provisioner/cache-role", "queue:worker-id:*"}})
	})
	cfg := cacheConfig(t, q, "cache-role")
	cfg.Taskcluster = config.Credentials{ClientID: workerClient, AccessToken: workerToken}
	startWorker(t, q, cfg)
	p := shell(`echo "foo" > /c/foo.txt`, 60)
	p["cache"] = map[string]string{"role-cache": "/c"}
	id := q.create(t, withScopes(newTask(cfg, p), "assume:project:cache-users"))
	wantState(t, q.waitRun(t, id, 0, 2*time.Minute), 0, tc.StateCompleted, "completed")
	if dirs := cacheInstances(t, cfg, "role-cache"); len(dirs) != 1 {
		t.Fatalf("instances %v", dirs)
	} else if _, err := os.Stat(filepath.Join(dirs[0], "foo.txt")); err != nil {
		t.Error(err)
	}

	// A role that does not grant the cache does not help.
	p["cache"] = map[string]string{"other-cache": "/c"}
	denied := q.create(t, withScopes(newTask(cfg, p), "assume:project:cache-users"))
	wantState(t, q.waitRun(t, denied, 0, 2*time.Minute), 0, tc.StateFailed, "failed")
	mustContain(t, q.logOf(t, denied, 0, ""), "Insufficient scopes to attach cache volumes.")
}
