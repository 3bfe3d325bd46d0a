package worker_test

// Runner-tier tests of volume caches: the real worker with the cache
// feature, the embedded queue and the scripted Docker, in fake time.

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	cachefeature "go.dockerworker.dev/docker-worker/features/cache"
	"go.dockerworker.dev/docker-worker/worker/cache"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockerfake"
	"go.dockerworker.dev/docker-worker/worker/slugid"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// caches is a cache feature over a test directory, recording the binds of
// every container.
type caches struct {
	dir  string
	f    *cachefeature.Feature
	logs *logBuffer // the feature's worker log

	mu    sync.Mutex
	binds [][]string
}

func newCaches(t *testing.T) *caches {
	t.Helper()
	c := &caches{dir: filepath.Join(t.TempDir(), "caches"), logs: &logBuffer{}}
	logger := slog.New(slog.NewJSONHandler(c.logs, nil))
	c.f = cachefeature.New(cachefeature.Config{
		Manager:    cache.New(cache.Config{Dir: c.dir, Logger: logger}),
		WorkerPool: "null-provisioner/fake-docker",
		Logger:     logger,
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("cache log:\n%s", c.logs.String())
		}
	})
	return c
}

// script records the container's binds, writes taskID into each bound
// directory (as a task writing to its cache would) and exits with code.
func (c *caches) script(code int, s dockerfake.Script) func(docker.ContainerSpec) dockerfake.Script {
	return func(spec docker.ContainerSpec) dockerfake.Script {
		c.mu.Lock()
		c.binds = append(c.binds, spec.Binds)
		c.mu.Unlock()
		for _, b := range spec.Binds {
			src, _, _ := strings.Cut(b, ":")
			if strings.HasPrefix(src, c.dir) {
				os.WriteFile(filepath.Join(src, "written-by-"+spec.Labels["dev.dockerworker.task-id"]), nil, 0o644)
			}
		}
		s.ExitCode = code
		return s
	}
}

func (c *caches) containerBinds(n int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n >= len(c.binds) {
		return nil
	}
	return c.binds[n]
}

// createCacheTask creates a task with payload and scopes for the worker.
func (e *env) createCacheTask(payload map[string]any, scopes ...string) string {
	e.t.Helper()
	now := time.Now().UTC()
	ts := func(t time.Time) string { return t.Format("2006-01-02T15:04:05.000Z") }
	def, err := json.Marshal(map[string]any{
		"provisionerId": e.cfg.ProvisionerID, "workerType": e.cfg.WorkerType, "schedulerId": "tests",
		"retries": 1, "created": ts(now), "deadline": ts(now.Add(taskDeadline)), "expires": ts(now.Add(24 * time.Hour)),
		"scopes": scopes, "payload": payload,
		"metadata": map[string]any{"name": "cache test", "description": "caches", "owner": "tests@localhost",
			"source": "https://localhost/docker-worker/tests"},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	id := slugid.Nice()
	if _, err := e.admin.CreateTask(e.t.Context(), id, def); err != nil {
		e.t.Fatalf("create task: %v", err)
	}
	return id
}

func cachePayload(maxRunTime int, caches map[string]string) map[string]any {
	p := payload(maxRunTime, "true")
	p["cache"] = caches
	return p
}

// instanceDirs lists the instance directories of cache name.
func instanceDirs(dir, name string) []string {
	entries, _ := os.ReadDir(filepath.Join(dir, name))
	var out []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, filepath.Join(dir, name, e.Name()))
		}
	}
	return out
}

func TestCacheMountedReleasedAndReused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCaches(t)
		e := start(t, setup{extra: []features.Feature{c.f}, script: c.script(0, dockerfake.Script{})})
		p := cachePayload(60, map[string]string{"objdir": "/home/worker/obj"})
		first := e.createCacheTask(p, "docker-worker:cache:objdir")
		if st := e.waitRun(first, 0); st.Runs[0].State != tc.StateCompleted {
			t.Fatalf("first task %+v", st.Runs[0])
		}
		dirs := instanceDirs(c.dir, "objdir")
		if len(dirs) != 1 {
			t.Fatalf("instances %v, want one", dirs)
		}
		if got, want := c.containerBinds(0), []string{dirs[0] + ":/home/worker/obj"}; strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("binds %v, want %v", got, want)
		}
		log, _ := e.taskLog(first, 0)
		if !strings.Contains(log, `using cache "objdir" -> /home/worker/obj`) {
			t.Errorf("task log lacks the cache line:\n%s", log)
		}

		second := e.createCacheTask(p, "docker-worker:cache:objdir:null-provisioner/fake-docker")
		if st := e.waitRun(second, 0); st.Runs[0].State != tc.StateCompleted {
			t.Fatalf("second task %+v", st.Runs[0])
		}
		if got := c.containerBinds(1); len(got) != 1 || !strings.HasPrefix(got[0], dirs[0]+":") {
			t.Errorf("second task's binds %v, want the first task's instance %s", got, dirs[0])
		}
		for _, task := range []string{first, second} {
			if _, err := os.Stat(filepath.Join(dirs[0], "written-by-"+task)); err != nil {
				t.Errorf("file of %s: %v", task, err)
			}
		}
		for msg, want := range map[string]int{"cache volume miss": 1, "cache volume hit": 1, "cache volume release": 2} {
			if got := c.logs.count(msg); got != want {
				t.Errorf("%d %q records, want %d", got, msg, want)
			}
		}
	})
}

// Two tasks running at once get two instances.
func TestCacheNotSharedByRunningTasks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCaches(t)
		e := start(t, setup{
			extra:  []features.Feature{c.f},
			config: func(cfg *config.Config) { cfg.Capacity = 2 },
			script: c.script(0, dockerfake.Script{Steps: []dockerfake.Step{{After: time.Minute}}}),
		})
		p := cachePayload(600, map[string]string{"c": "/c"})
		a := e.createCacheTask(p, "docker-worker:cache:c")
		b := e.createCacheTask(p, "docker-worker:cache:c")
		e.waitRun(a, 0)
		e.waitRun(b, 0)
		if x, y := c.containerBinds(0), c.containerBinds(1); len(x) != 1 || len(y) != 1 || x[0] == y[0] {
			t.Errorf("binds %v and %v, want two instances", x, y)
		}
	})
}

func TestCacheInsufficientScopes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCaches(t)
		e := start(t, setup{extra: []features.Feature{c.f}, script: c.script(0, dockerfake.Script{})})
		id := e.createCacheTask(cachePayload(60, map[string]string{"objdir": "/obj"}), "docker-worker:cache:other")
		st := e.waitRun(id, 0)
		if r := st.Runs[0]; r.State != tc.StateFailed || r.ReasonResolved != "failed" {
			t.Errorf("run %+v, want failed/failed", r)
		}
		log, _ := e.taskLog(id, 0)
		for _, want := range []string{"Insufficient scopes to attach cache volumes.", `Missing scopes: {"AllOf":[{"AnyOf":["docker-worker:cache:objdir"`} {
			if !strings.Contains(log, want) {
				t.Errorf("task log lacks %q:\n%s", want, log)
			}
		}
		if _, err := os.Stat(c.dir); !os.IsNotExist(err) {
			t.Errorf("cache directory created: %v", err)
		}
		if n := len(e.docker.Containers()); n != 0 {
			t.Errorf("%d containers created", n)
		}
	})
}

func TestCacheInvalidName(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCaches(t)
		e := start(t, setup{extra: []features.Feature{c.f}})
		id := e.createCacheTask(cachePayload(60, map[string]string{"tmp-obj-dir::1": "/obj"}), "docker-worker:cache:*")
		if r := e.waitRun(id, 0).Runs[0]; r.State != tc.StateFailed {
			t.Errorf("run %+v, want failed", r)
		}
		log, _ := e.taskLog(id, 0)
		if !strings.Contains(log, `Invalid key name was provided.  Ensure that the cache name does not contain "::".`) {
			t.Errorf("task log:\n%s", log)
		}
		if _, err := os.Stat(c.dir); !os.IsNotExist(err) {
			t.Errorf("cache directory created: %v", err)
		}
	})
}

// cache: {}, null and an absent cache all run (docker-worker's "empty
// cache does not throw").
func TestCacheEmpty(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCaches(t)
		e := start(t, setup{extra: []features.Feature{c.f}})
		for _, tt := range []struct {
			name   string
			value  any
			reason string
		}{
			{"empty", map[string]string{}, "completed"},
			{"absent", nil, "completed"},
			{"null", json.RawMessage("null"), "completed"},
		} {
			p := payload(60, "true")
			if tt.value != nil {
				p["cache"] = tt.value
			}
			id := e.createCacheTask(p)
			if r := e.waitRun(id, 0).Runs[0]; r.ReasonResolved != tt.reason {
				t.Errorf("cache %s: run %+v, want %s", tt.name, r, tt.reason)
			}
		}
		if _, err := os.Stat(c.dir); !os.IsNotExist(err) {
			t.Errorf("cache directory created: %v", err)
		}
	})
}

func TestCachePurgedOnExitStatus(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCaches(t)
		e := start(t, setup{extra: []features.Feature{c.f}, script: c.script(36, dockerfake.Script{})})
		p := cachePayload(60, map[string]string{"c": "/c"})
		p["onExitStatus"] = map[string]any{"purgeCaches": []int{36}}
		id := e.createCacheTask(p, "docker-worker:cache:c")
		if r := e.waitRun(id, 0).Runs[0]; r.State != tc.StateFailed {
			t.Errorf("run %+v, want failed", r)
		}
		e.waitIdle(1)
		if dirs := instanceDirs(c.dir, "c"); len(dirs) != 0 {
			t.Errorf("instances left: %v", dirs)
		}
		if c.logs.count("cache volume removed") != 1 {
			t.Error("no removal logged")
		}
		log, _ := e.taskLog(id, 0)
		if !strings.Contains(log, "Exit code 36 is in onExitStatus.purgeCaches") {
			t.Errorf("task log:\n%s", log)
		}
	})
}

// The instance of a task killed at maxRunTime is released and reused.
func TestCacheReleasedAfterMaxRunTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCaches(t)
		e := start(t, setup{extra: []features.Feature{c.f}, script: c.script(0, untilKilled)})
		p := cachePayload(10, map[string]string{"c": "/c"})
		first := e.createCacheTask(p, "docker-worker:cache:c")
		if r := e.waitRun(first, 0).Runs[0]; r.State != tc.StateFailed {
			t.Errorf("run %+v, want failed", r)
		}
		second := e.createCacheTask(p, "docker-worker:cache:c")
		e.waitRun(second, 0)
		if x, y := c.containerBinds(0), c.containerBinds(1); len(x) != 1 || len(y) != 1 || x[0] != y[0] {
			t.Errorf("binds %v then %v, want the same instance", x, y)
		}
		if c.logs.count("cache volume release") != 2 {
			t.Errorf("%d releases logged, want 2", c.logs.count("cache volume release"))
		}
	})
}
