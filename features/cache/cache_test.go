package cache_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"go.dockerworker.dev/docker-worker/features"
	cachefeature "go.dockerworker.dev/docker-worker/features/cache"
	"go.dockerworker.dev/docker-worker/features/featuretest"
	"go.dockerworker.dev/docker-worker/schemas"
	"go.dockerworker.dev/docker-worker/worker/cache"
	"go.dockerworker.dev/docker-worker/worker/taskerr"
)

const pool = "null-provisioner/caches"

// env is a feature over a fresh cache directory.
type env struct {
	dir  string
	mgr  *cache.Manager
	f    *cachefeature.Feature
	exp  *expander
	logs *bytes.Buffer
	mu   sync.Mutex // guards logs
}

type expander struct {
	mu    sync.Mutex
	roles map[string][]string
	err   error
	calls int
}

func (e *expander) ExpandScopes(_ context.Context, scopes []string) ([]string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls++
	if e.err != nil {
		return nil, e.err
	}
	out := append([]string(nil), scopes...)
	for _, s := range scopes {
		out = append(out, e.roles[s]...)
	}
	return out, nil
}

func (e *expander) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.calls
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func newEnv(t *testing.T, mutate func(*cachefeature.Config)) *env {
	t.Helper()
	e := &env{dir: filepath.Join(t.TempDir(), "caches"), exp: &expander{}, logs: &bytes.Buffer{}}
	logger := slog.New(slog.NewJSONHandler(lockedWriter{&e.mu, e.logs}, nil))
	e.mgr = cache.New(cache.Config{Dir: e.dir, Logger: logger})
	cfg := cachefeature.Config{Manager: e.mgr, Expander: e.exp, WorkerPool: pool, Logger: logger}
	if mutate != nil {
		mutate(&cfg)
	}
	e.f = cachefeature.New(cfg)
	return e
}

func (e *env) logText() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.logs.String()
}

// newTask is a task with payload p and scopes.
func newTask(id string, p *schemas.Payload, scopes ...string) *featuretest.Task {
	return &featuretest.Task{
		ID: id, Pay: p, Scope: scopes,
		Info: features.WorkerInfo{ProvisionerID: "null-provisioner", WorkerType: "caches", WorkerID: "w1"},
	}
}

func payload(caches map[string]string) *schemas.Payload {
	return &schemas.Payload{Image: schemas.Image{Type: schemas.ImageTypeDockerImage, Name: "busybox"}, MaxRunTime: 60, Cache: caches}
}

// run is one task's part of the feature.
type run struct {
	t    *testing.T
	task *featuretest.Task
	tf   features.TaskFeature
	resp features.PrepareResponse
}

func (e *env) start(t *testing.T, task *featuretest.Task) *run {
	t.Helper()
	tf, err := e.f.NewTask(task)
	if err != nil {
		t.Fatal(err)
	}
	r := &run{t: t, task: task, tf: tf}
	t.Cleanup(func() { r.cleanup() })
	return r
}

func (r *run) prepare() error {
	return r.tf.(features.Preparer).Prepare(r.t.Context(), &features.PrepareRequest{}, &r.resp)
}

func (r *run) mustPrepare() *run {
	r.t.Helper()
	if err := r.prepare(); err != nil {
		r.t.Fatalf("prepare: %v", err)
	}
	return r
}

func (r *run) exited(code int) {
	r.t.Helper()
	if err := r.tf.(features.Exiter).Exited(r.t.Context(), &features.ExitedRequest{ExitCode: code}); err != nil {
		r.t.Fatalf("exited: %v", err)
	}
}

func (r *run) cleanup() {
	r.t.Helper()
	if err := r.tf.(features.Cleaner).Cleanup(context.WithoutCancel(r.t.Context())); err != nil {
		r.t.Errorf("cleanup: %v", err)
	}
}

// mount returns the host directory mounted at target.
func (r *run) mount(target string) string {
	r.t.Helper()
	for _, m := range r.resp.Mounts {
		if m.Target == target {
			return m.Source
		}
	}
	r.t.Fatalf("nothing mounted at %s: %+v", target, r.resp.Mounts)
	return ""
}

func dirEntries(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// The feature is always on and owns the cache section.
func TestDeclarations(t *testing.T) {
	f := cachefeature.New(cachefeature.Config{})
	if !f.AlwaysOn() || f.Name() != "cache" {
		t.Errorf("AlwaysOn %v, Name %q", f.AlwaysOn(), f.Name())
	}
	if diff := cmp.Diff([]string{"cache"}, f.Owns()); diff != "" {
		t.Error(diff)
	}
}

// cache: {} and an absent cache need nothing and create nothing ("empty
// cache does not throw").
func TestNoCaches(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    *schemas.Payload
	}{
		{"absent", payload(nil)},
		{"empty", payload(map[string]string{})},
		{"before validation", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			r := e.start(t, newTask("t1", tc.p)).mustPrepare()
			r.exited(0)
			r.cleanup()
			if len(r.resp.Mounts) != 0 || len(r.resp.LogLines) != 0 {
				t.Errorf("contributed %+v", r.resp)
			}
			if _, err := os.Stat(e.dir); !os.IsNotExist(err) {
				t.Errorf("cache root created: %v", err)
			}
		})
	}
}

func TestMounts(t *testing.T) {
	for _, tc := range []struct {
		name   string
		scopes []string
	}{
		{"plain scopes", []string{"docker-worker:cache:objdir", "docker-worker:cache:vcs"}},
		{"per-pool scopes", []string{"docker-worker:cache:objdir:" + pool, "docker-worker:cache:vcs:" + pool}},
		{"star scope", []string{"docker-worker:cache:*"}},
		{"prefix star", []string{"docker-worker:cache:objd*", "docker-worker:cache:vcs:null-provisioner/*"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			r := e.start(t, newTask("t1", payload(map[string]string{"vcs": "/vcs", "objdir": "/home/worker/obj"}), tc.scopes...)).mustPrepare()
			if len(r.resp.Mounts) != 2 {
				t.Fatalf("mounts %+v", r.resp.Mounts)
			}
			for _, m := range r.resp.Mounts {
				if m.ReadOnly || m.Volume {
					t.Errorf("mount %+v is not a read-write bind", m)
				}
				name := map[string]string{"/vcs": "vcs", "/home/worker/obj": "objdir"}[m.Target]
				if filepath.Dir(m.Source) != filepath.Join(e.dir, name) {
					t.Errorf("mount %+v not below %s", m, filepath.Join(e.dir, name))
				}
				if fi, err := os.Stat(m.Source); err != nil || !fi.IsDir() {
					t.Errorf("%s: %v", m.Source, err)
				}
			}
			want := []string{`using cache "objdir" -> /home/worker/obj`, `using cache "vcs" -> /vcs`}
			if diff := cmp.Diff(want, r.resp.LogLines); diff != "" {
				t.Errorf("log lines (-want +got):\n%s", diff)
			}
			if e.exp.count() != 0 {
				t.Error("scopes expanded although the task's own granted the caches")
			}
		})
	}
}

func TestInsufficientScopes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		scopes  []string
		missing string
	}{
		{"none", nil, `Missing scopes: {"AllOf":[{"AnyOf":["docker-worker:cache:a","docker-worker:cache:a:` + pool + `"]},{"AnyOf":["docker-worker:cache:b","docker-worker:cache:b:` + pool + `"]}]}`},
		{"one of two", []string{"docker-worker:cache:a"}, `Missing scopes: {"AllOf":[{"AnyOf":["docker-worker:cache:b","docker-worker:cache:b:` + pool + `"]}]}`},
		{"other pool", []string{"docker-worker:cache:a:other/pool", "docker-worker:cache:b"}, `Missing scopes: {"AllOf":[{"AnyOf":["docker-worker:cache:a","docker-worker:cache:a:` + pool + `"]}]}`},
		{"role not granting", []string{"assume:project:nothing"}, `"docker-worker:cache:a"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			r := e.start(t, newTask("t1", payload(map[string]string{"a": "/a", "b": "/b"}), tc.scopes...))
			err := r.prepare()
			if err == nil {
				t.Fatal("prepared")
			}
			if k := taskerr.Classify(err); k != taskerr.Failed {
				t.Errorf("resolution %v, want failed", k)
			}
			msg := err.Error()
			for _, want := range []string{"Insufficient scopes to attach cache volumes.", tc.missing,
				`Required scopes: {"AllOf":[{"AnyOf":["docker-worker:cache:a","docker-worker:cache:a:` + pool + `"]},{"AnyOf":["docker-worker:cache:b","docker-worker:cache:b:` + pool + `"]}]}`} {
				if !strings.Contains(msg, want) {
					t.Errorf("message lacks %q:\n%s", want, msg)
				}
			}
			if len(r.resp.Mounts) != 0 {
				t.Errorf("mounts %+v", r.resp.Mounts)
			}
			if _, err := os.Stat(e.dir); !os.IsNotExist(err) {
				t.Errorf("cache directory created: %v", err)
			}
		})
	}
}

// The task's scopes are expanded through roles (auth.expandScopes) when
// they do not grant a cache themselves.
func TestScopesThroughRoles(t *testing.T) {
	e := newEnv(t, nil)
	e.exp.roles = map[string][]string{"assume:project:caches": {"docker-worker:cache:*"}}
	e.start(t, newTask("t1", payload(map[string]string{"a": "/a"}), "assume:project:caches")).mustPrepare()
	if e.exp.count() != 1 {
		t.Errorf("expandScopes called %d times, want 1", e.exp.count())
	}

	e.exp.err = errors.New("auth is down")
	err := e.start(t, newTask("t2", payload(map[string]string{"a": "/a"}), "assume:project:caches")).prepare()
	if k := taskerr.Classify(err); err == nil || k != taskerr.InternalErrorKind {
		t.Errorf("expansion failure: %v (%v), want internal-error", err, k)
	}

	// Without an expander the task's scopes are all there is.
	e2 := newEnv(t, func(c *cachefeature.Config) { c.Expander = nil })
	if err := e2.start(t, newTask("t3", payload(map[string]string{"a": "/a"}), "assume:project:caches")).prepare(); err == nil {
		t.Error("a role was taken for the scope it might grant")
	}
}

func TestInvalidPayloads(t *testing.T) {
	for _, tc := range []struct {
		name   string
		caches map[string]string
		want   string
	}{
		{"double colon", map[string]string{"tmp-obj-dir::1": "/x"}, `Invalid key name was provided.  Ensure that the cache name does not contain "::".`},
		{"dot dot", map[string]string{"..": "/x"}, `Invalid cache name ".."`},
		{"slash", map[string]string{"a/b": "/x"}, `Invalid cache name "a/b"`},
		{"empty name", map[string]string{"": "/x"}, `Invalid cache name ""`},
		{"relative mount", map[string]string{"a": "x"}, `cache "a": the mount point "x" is not an absolute path`},
		{"colon in mount", map[string]string{"a": "/x:ro"}, `contains a colon`},
		{"same mount point", map[string]string{"a": "/x", "b": "/x/"}, `caches "a" and "b" are both mounted at /x`},
		{"one bad of two", map[string]string{"good": "/good", "bad::": "/bad"}, "Invalid key name was provided."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			err := e.start(t, newTask("t1", payload(tc.caches), "docker-worker:cache:*")).prepare()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if k := taskerr.Classify(err); k != taskerr.Failed {
				t.Errorf("resolution %v, want failed", k)
			}
			if _, err := os.Stat(e.dir); !os.IsNotExist(err) {
				t.Errorf("cache directory created: %v", err)
			}
		})
	}
}

// A released instance is mounted by the next task, content included;
// running tasks never share one.
func TestReleaseAndReuse(t *testing.T) {
	e := newEnv(t, nil)
	p := payload(map[string]string{"c": "/c"})
	r1 := e.start(t, newTask("t1", p, "docker-worker:cache:c")).mustPrepare()
	src := r1.mount("/c")
	os.WriteFile(filepath.Join(src, "foo.txt"), []byte("foo"), 0o644)

	r2 := e.start(t, newTask("t2", p, "docker-worker:cache:c")).mustPrepare()
	if r2.mount("/c") == src {
		t.Fatal("two running tasks share an instance")
	}
	r1.exited(0)
	r1.cleanup()
	r1.cleanup() // idempotent

	r3 := e.start(t, newTask("t3", p, "docker-worker:cache:c")).mustPrepare()
	if got := r3.mount("/c"); got != src {
		t.Errorf("third task got %s, want the released %s", got, src)
	}
	if b, _ := os.ReadFile(filepath.Join(r3.mount("/c"), "foo.txt")); string(b) != "foo" {
		t.Errorf("content %q", b)
	}
	// Each run declares its cache use: a new instance for the first two,
	// the released one for the third.
	for _, c := range []struct {
		r   *run
		hit bool
	}{{r1, false}, {r2, false}, {r3, true}} {
		if want := []features.CacheUse{{Name: "c", Hit: c.hit}}; !cmp.Equal(c.r.resp.Caches, want) {
			t.Errorf("caches %+v, want %+v", c.r.resp.Caches, want)
		}
	}
	logs := e.logText()
	for _, want := range []string{`"msg":"cache volume miss"`, `"msg":"cache volume release"`, `"msg":"cache volume hit"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("worker log lacks %s:\n%s", want, logs)
		}
	}
}

// An instance is released even when the task never reaches Exited
// (maxRunTime, abort).
func TestReleasedWithoutExit(t *testing.T) {
	e := newEnv(t, nil)
	p := payload(map[string]string{"c": "/c"})
	r1 := e.start(t, newTask("t1", p, "docker-worker:cache:c")).mustPrepare()
	r1.cleanup()
	r2 := e.start(t, newTask("t2", p, "docker-worker:cache:c")).mustPrepare()
	if r2.mount("/c") != r1.mount("/c") {
		t.Error("instance of an aborted task not released")
	}
}

func TestPurgeOnExitStatus(t *testing.T) {
	for _, tc := range []struct {
		name   string
		code   int
		purged bool
	}{
		{"listed code", 36, true},
		{"other code", 1, false},
		{"success", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			p := payload(map[string]string{"c": "/c", "d": "/d"})
			p.OnExitStatus = &schemas.OnExitStatus{PurgeCaches: []int{36, 72}}
			r := e.start(t, newTask("t1", p, "docker-worker:cache:*")).mustPrepare()
			c, d := r.mount("/c"), r.mount("/d")
			r.exited(tc.code)
			if _, err := os.Stat(c); err != nil {
				t.Fatal("instance removed while the task holds it")
			}
			r.cleanup()
			for _, src := range []string{c, d} {
				if _, err := os.Stat(src); os.IsNotExist(err) != tc.purged {
					t.Errorf("%s exists: %v, want removed: %v", src, err == nil, tc.purged)
				}
			}
			logLine := `Exit code 36 is in onExitStatus.purgeCaches: removing cache "c", "d" once the task is over.`
			if got := strings.Contains(r.task.LogText(), logLine); got != tc.purged {
				t.Errorf("task log has %q: %v, want %v; log:\n%s", logLine, got, tc.purged, r.task.LogText())
			}
			if tc.purged && !strings.Contains(e.logText(), `"msg":"cache volume removed"`) {
				t.Errorf("no removal logged:\n%s", e.logText())
			}
		})
	}
}

// fakePurges is a purge-cache service.
type fakePurges struct {
	mu    sync.Mutex
	reqs  []cachefeature.PurgeRequest
	err   error
	calls []time.Time // the since of each call
	pools []string
}

func (p *fakePurges) PurgeRequests(_ context.Context, workerPoolID string, since time.Time) ([]cachefeature.PurgeRequest, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, since)
	p.pools = append(p.pools, workerPoolID)
	if p.err != nil {
		return nil, p.err
	}
	return p.reqs, nil
}

func (p *fakePurges) sinces() []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.calls...)
}

// host records the hooks an extension registers.
type host struct {
	beforeFirst []features.StartHook
	afterClaim  []features.AfterClaimHook
}

var _ features.Host = (*host)(nil)

func (h *host) BeforeClaim(features.BeforeClaimHook)  {}
func (h *host) AfterClaim(f features.AfterClaimHook)  { h.afterClaim = append(h.afterClaim, f) }
func (h *host) BeforeFirstClaim(f features.StartHook) { h.beforeFirst = append(h.beforeFirst, f) }
func (h *host) Observe(features.Observer)             {}
func (h *host) Runs() features.Runs                   { return nil }

// claimed calls the after-claim hooks, as a claim does.
func (h *host) claimed(ctx context.Context) {
	for _, f := range h.afterClaim {
		f(ctx, features.RunRef{TaskID: "x"})
	}
}

// start calls the before-first-claim hooks.
func (h *host) start(ctx context.Context) error {
	for _, f := range h.beforeFirst {
		if err := f(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (h *host) hooks() (before, after int) { return len(h.beforeFirst), len(h.afterClaim) }

// newHost initialises ext on a new host.
func newHost(t *testing.T, ext features.Extension) *host {
	t.Helper()
	h := &host{}
	check(t, ext.Init(t.Context(), h))
	return h
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestPurgeRequests(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	var clockMu sync.Mutex
	clock := func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return now }
	advance := func(d time.Duration) { clockMu.Lock(); now = now.Add(d); clockMu.Unlock() }
	purges := &fakePurges{}
	e := newEnv(t, func(c *cachefeature.Config) {
		c.Purges, c.PurgeInterval, c.Now = purges, time.Minute, clock
	})
	h := newHost(t, e.f)
	if b, a := h.hooks(); b != 1 || a != 1 {
		t.Fatalf("hooks: %d before first claim, %d after claims", b, a)
	}
	check(t, h.start(t.Context()))

	p := payload(map[string]string{"c": "/c"})
	r := e.start(t, newTask("t1", p, "docker-worker:cache:c")).mustPrepare()
	old := r.mount("/c")
	r.cleanup()

	h.claimed(t.Context())
	if got := purges.sinces(); len(got) != 1 || !got[0].Before(now) {
		t.Fatalf("calls %v", got)
	}
	if purges.pools[0] != pool {
		t.Errorf("asked for pool %s, want %s", purges.pools[0], pool)
	}

	// A request is made; claims within the interval do not ask.
	purges.mu.Lock()
	purges.reqs = []cachefeature.PurgeRequest{{CacheName: "c", Before: time.Now().Add(time.Hour)}, {CacheName: "unknown", Before: now}}
	purges.mu.Unlock()
	advance(30 * time.Second)
	h.claimed(t.Context())
	if n := len(purges.sinces()); n != 1 {
		t.Fatalf("%d calls within the interval, want 1", n)
	}
	if _, err := os.Stat(old); err != nil {
		t.Fatal("purged before the interval passed")
	}
	advance(31 * time.Second)
	h.claimed(t.Context())
	sinces := purges.sinces()
	if len(sinces) != 2 {
		t.Fatalf("%d calls, want 2", len(sinces))
	}
	if want := now.Add(-61*time.Second - 5*time.Minute); !sinces[1].Equal(want) {
		t.Errorf("second since %v, want %v (the previous call less 5 minutes)", sinces[1], want)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Error("free instance named by a purge request not removed")
	}
	if !strings.Contains(e.logText(), `"msg":"cache volume removed"`) {
		t.Errorf("no removal logged:\n%s", e.logText())
	}

	// Failures are warnings; the next claim after the interval asks again.
	purges.mu.Lock()
	purges.err, purges.reqs = errors.New("purge-cache is down"), nil
	purges.mu.Unlock()
	advance(time.Minute)
	h.claimed(t.Context())
	h.claimed(t.Context()) // a failed call does not count
	if n := len(purges.sinces()); n != 4 {
		t.Errorf("%d calls, want 4", n)
	}
	if !strings.Contains(e.logText(), "could not fetch purge requests") {
		t.Errorf("no warning:\n%s", e.logText())
	}
}

// The first fetch reaches back before the oldest instance found on disk,
// so requests made while no worker ran apply.
func TestFirstPurgeFetchAfterRestart(t *testing.T) {
	dir := t.TempDir()
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m1 := cache.New(cache.Config{Dir: dir, Now: func() time.Time { return created }})
	l, err := m1.Acquire(t.Context(), "c", cache.Holder{TaskID: "t0"})
	check(t, err)
	check(t, l.Release(t.Context()))

	purges := &fakePurges{reqs: []cachefeature.PurgeRequest{{CacheName: "c", Before: created.Add(time.Hour)}}}
	f := cachefeature.New(cachefeature.Config{Manager: cache.New(cache.Config{Dir: dir}), Purges: purges, WorkerPool: pool})
	h := newHost(t, f)
	check(t, h.start(t.Context()))
	h.claimed(t.Context())
	if got := purges.sinces(); len(got) != 1 || !got[0].Before(created) {
		t.Errorf("since %v, want before %v", got, created)
	}
	if _, err := os.Stat(l.Path); !os.IsNotExist(err) {
		t.Error("instance not purged")
	}
}

// Without a manager (the inert feature list of `validate`) Init registers
// nothing.
func TestInertFeature(t *testing.T) {
	h := newHost(t, cachefeature.New(cachefeature.Config{}))
	if b, a := h.hooks(); b != 0 || a != 0 {
		t.Errorf("hooks registered: %d, %d", b, a)
	}
}
