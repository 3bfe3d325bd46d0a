package cache_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"go.dockerworker.dev/docker-worker/worker/cache"
)

// clock is a fake clock that moves one second at every reading, so that
// every event has its own time.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Second)
	return c.now
}

// logs collects the manager's records.
type logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// msgs returns the messages logged, in order.
func (l *logs) msgs() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.buf.String(), "\n") {
		var rec struct{ Msg string }
		if json.Unmarshal([]byte(line), &rec) == nil && strings.HasPrefix(rec.Msg, "cache volume ") {
			out = append(out, rec.Msg)
		}
	}
	return out
}

type fixture struct {
	dir   string
	clock *clock
	logs  *logs
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return &fixture{dir: t.TempDir(), clock: newClock(), logs: &logs{}}
}

// manager returns a manager over the fixture's directory (a new process,
// when called again) with alive as the check of previous holders.
func (f *fixture) manager(alive cache.AliveFunc) *cache.Manager {
	return cache.New(cache.Config{
		Dir:    f.dir,
		Alive:  alive,
		Logger: slog.New(slog.NewJSONHandler(f.logs, nil)),
		Now:    f.clock.Now,
	})
}

func holder(task string) cache.Holder { return cache.Holder{TaskID: task, RunID: 0, WorkerID: "w1"} }

func acquire(t *testing.T, m *cache.Manager, name, task string) *cache.Lease {
	t.Helper()
	l, err := m.Acquire(t.Context(), name, holder(task))
	if err != nil {
		t.Fatalf("acquire %s: %v", name, err)
	}
	return l
}

func release(t *testing.T, l *cache.Lease) {
	t.Helper()
	if err := l.Release(t.Context()); err != nil {
		t.Fatalf("release %s: %v", l.Key(), err)
	}
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		name string
		want string // "" valid, else part of the message
	}{
		{"level-3-checkouts-v2", ""},
		{"tooltool_cache", ""},
		{"with space.and.dots", ""},
		{".hidden", ""},
		{"a::b", `Invalid key name was provided.  Ensure that the cache name does not contain "::".`},
		{"::", `Invalid key name was provided.  Ensure that the cache name does not contain "::".`},
		{"", "the name is empty"},
		{".", `"." and ".." are not allowed`},
		{"..", `"." and ".." are not allowed`},
		{"a/b", "slash"},
		{"../etc", "slash"},
		{`a\b`, "backslash"},
		{"a:b", "colon"},
		{"a\nb", "control characters"},
		{"a\x00b", "control characters"},
		{"\xff", "invalid UTF-8"},
		{strings.Repeat("x", 256), "at most 255 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := cache.ValidName(tc.name)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && err == nil:
				t.Errorf("accepted, want %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Errorf("error %q, want it to contain %q", err, tc.want)
			case tc.want != "" && !errors.Is(err, cache.ErrInvalidName):
				t.Errorf("error %v is not ErrInvalidName", err)
			}
		})
	}
}

func TestAcquireCreatesLayout(t *testing.T) {
	f := newFixture(t)
	m := f.manager(nil)
	l := acquire(t, m, "objdir", "t1")
	if l.Hit {
		t.Error("first acquire is a hit")
	}
	if want := filepath.Join(f.dir, "objdir", l.ID); l.Path != want {
		t.Errorf("path %s, want %s", l.Path, want)
	}
	if fi, err := os.Stat(l.Path); err != nil || !fi.IsDir() {
		t.Errorf("instance directory: %v", err)
	}
	if !exists(l.Path + ".json") {
		t.Error("no state file beside the instance directory")
	}
	entries, _ := os.ReadDir(l.Path)
	if len(entries) != 0 {
		t.Errorf("the mounted directory is not empty: %v", entries)
	}
	if l.Key() != "objdir::"+l.ID {
		t.Errorf("key %s", l.Key())
	}
	release(t, l)
	if diff := cmp.Diff([]string{"cache volume miss", "cache volume release"}, f.logs.msgs()); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
}

func TestInvalidNameCreatesNothing(t *testing.T) {
	f := newFixture(t)
	m := f.manager(nil)
	for _, name := range []string{"a::b", "..", "x/y", ""} {
		if _, err := m.Acquire(t.Context(), name, holder("t1")); !errors.Is(err, cache.ErrInvalidName) {
			t.Errorf("%q: error %v, want ErrInvalidName", name, err)
		}
	}
	if entries, _ := os.ReadDir(f.dir); len(entries) != 0 {
		t.Errorf("created %v", entries)
	}
}

// The free instance released last is reused; a held one never is.
func TestReuseMostRecentlyReleased(t *testing.T) {
	f := newFixture(t)
	m := f.manager(nil)
	a := acquire(t, m, "c", "t1")
	b := acquire(t, m, "c", "t2")
	if a.ID == b.ID {
		t.Fatal("two holders share an instance")
	}
	release(t, b)
	release(t, a) // a is the most recently released
	c := acquire(t, m, "c", "t3")
	if !c.Hit || c.ID != a.ID {
		t.Errorf("got %s (hit %v), want the most recently released %s", c.ID, c.Hit, a.ID)
	}
	d := acquire(t, m, "c", "t4")
	if !d.Hit || d.ID != b.ID {
		t.Errorf("got %s (hit %v), want the other free instance %s", d.ID, d.Hit, b.ID)
	}
	e := acquire(t, m, "c", "t5")
	if e.Hit || e.ID == a.ID || e.ID == b.ID {
		t.Errorf("got %s (hit %v), want a new instance", e.ID, e.Hit)
	}
	other := acquire(t, m, "other", "t6")
	if other.Hit {
		t.Error("another cache's instance was reused")
	}
}

func TestReleaseIsIdempotent(t *testing.T) {
	f := newFixture(t)
	m := f.manager(nil)
	l := acquire(t, m, "c", "t1")
	release(t, l)
	release(t, l)
	n := 0
	for _, msg := range f.logs.msgs() {
		if msg == "cache volume release" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d releases logged, want 1", n)
	}
}

func TestConcurrentAcquiresNeverShare(t *testing.T) {
	f := newFixture(t)
	m := f.manager(nil)
	for round := range 3 {
		var wg sync.WaitGroup
		leases := make([]*cache.Lease, 8)
		for i := range leases {
			wg.Go(func() {
				l, err := m.Acquire(t.Context(), "shared", holder("t"))
				if err != nil {
					t.Error(err)
					return
				}
				leases[i] = l
			})
		}
		wg.Wait()
		seen := map[string]bool{}
		for _, l := range leases {
			if l == nil {
				t.FailNow()
			}
			if seen[l.ID] {
				t.Fatalf("round %d: instance %s handed out twice", round, l.ID)
			}
			seen[l.ID] = true
		}
		for _, l := range leases {
			wg.Go(func() { l.Release(t.Context()) })
		}
		wg.Wait()
	}
	if got := len(m.Instances()); got != 8 {
		t.Errorf("%d instances, want 8 (reused across rounds)", got)
	}
}

// A lease marked for purge keeps its directory while held and loses it on
// release; the name then gets a new instance.
func TestPurgeMarkedLease(t *testing.T) {
	f := newFixture(t)
	m := f.manager(nil)
	l := acquire(t, m, "c", "t1")
	os.WriteFile(filepath.Join(l.Path, "foo.txt"), []byte("foo"), 0o644)
	if err := l.Purge("exit status 36"); err != nil {
		t.Fatal(err)
	}
	if !exists(l.Path) {
		t.Fatal("a held instance was deleted")
	}
	if got := m.Instances(); len(got) != 1 || !got[0].Purge {
		t.Errorf("instances %+v, want one marked", got)
	}
	release(t, l)
	if exists(l.Path) || exists(l.Path+".json") {
		t.Error("purged instance still on disk after release")
	}
	if entries, _ := os.ReadDir(filepath.Dir(l.Path)); len(entries) != 0 {
		t.Errorf("left over: %v", entries)
	}
	n := acquire(t, m, "c", "t2")
	if n.Hit || n.ID == l.ID {
		t.Error("a purged instance was reused")
	}
	want := []string{"cache volume miss", "cache volume purge", "cache volume release", "cache volume removed", "cache volume miss"}
	if diff := cmp.Diff(want, f.logs.msgs()); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
}

func TestPurgeBefore(t *testing.T) {
	f := newFixture(t)
	m := f.manager(nil)
	old := acquire(t, m, "c", "t1")
	held := acquire(t, m, "c", "t2")
	other := acquire(t, m, "d", "t3")
	before := f.clock.Now()
	young := acquire(t, m, "c", "t4") // created after the request's time
	release(t, old)
	release(t, other)
	release(t, young)

	n, err := m.PurgeBefore(t.Context(), "c", before)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("marked %d, want 2 (the instances created before the request)", n)
	}
	if exists(old.Path) {
		t.Error("free instance created before the request not removed")
	}
	if !exists(held.Path) || !exists(young.Path) || !exists(other.Path) {
		t.Error("held, younger or other caches' instances removed")
	}
	release(t, held)
	if exists(held.Path) {
		t.Error("marked instance not removed once released")
	}
	if again, _ := m.PurgeBefore(t.Context(), "c", before); again != 0 {
		t.Errorf("marked %d again, want 0", again)
	}
	if l := acquire(t, m, "c", "t5"); l.ID != young.ID {
		t.Errorf("got %s, want the instance younger than the request", l.ID)
	}
}

// Instances, their holders and marks survive a new process.
func TestRestart(t *testing.T) {
	f := newFixture(t)
	m1 := f.manager(nil)
	l := acquire(t, m1, "c", "t1")
	if err := os.WriteFile(filepath.Join(l.Path, "foo.txt"), []byte("foo"), 0o644); err != nil {
		t.Fatal(err)
	}
	release(t, l)
	marked := acquire(t, m1, "m", "t2")
	marked.Purge("test")
	// The process stops with "m" held and marked: its container is gone
	// (nil Alive).

	m2 := f.manager(nil)
	if err := m2.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	if exists(marked.Path) {
		t.Error("marked instance left held by the previous process not removed once its holder was gone")
	}
	got := acquire(t, m2, "c", "t3")
	if !got.Hit || got.ID != l.ID {
		t.Fatalf("after restart got %s (hit %v), want %s", got.ID, got.Hit, l.ID)
	}
	if b, err := os.ReadFile(filepath.Join(got.Path, "foo.txt")); err != nil || string(b) != "foo" {
		t.Errorf("content after restart: %q, %v", b, err)
	}
}

// Acquire loads the state itself when Load was not called.
func TestAcquireLoadsLazily(t *testing.T) {
	f := newFixture(t)
	l := acquire(t, f.manager(nil), "c", "t1")
	release(t, l)
	got := acquire(t, f.manager(nil), "c", "t2")
	if got.ID != l.ID {
		t.Errorf("got %s, want %s", got.ID, l.ID)
	}
}

// An instance a crashed process held is not handed out while its
// container exists, nor when Docker cannot tell; once it is gone it is
// released.
func TestCrashedHolder(t *testing.T) {
	f := newFixture(t)
	crashed := acquire(t, f.manager(nil), "c", "crashed-task")
	os.WriteFile(filepath.Join(crashed.Path, "half-written"), []byte("x"), 0o644)

	var mu sync.Mutex
	var asked []cache.Holder
	answer := struct {
		alive bool
		err   error
	}{alive: true}
	m := f.manager(func(_ context.Context, h cache.Holder) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, h)
		return answer.alive, answer.err
	})
	if err := m.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := cache.Holder{TaskID: "crashed-task", RunID: 0, WorkerID: "w1"}
	if len(asked) != 1 || asked[0] != want {
		t.Fatalf("asked about %+v, want %+v", asked, want)
	}
	inst := m.Instances()
	if len(inst) != 1 || inst[0].Holder == nil || !inst[0].Stale {
		t.Fatalf("instances %+v, want one stale-held", inst)
	}
	l := acquire(t, m, "c", "t2")
	if l.ID == crashed.ID {
		t.Fatal("instance of a live container handed out")
	}
	release(t, l)

	mu.Lock()
	answer.alive, answer.err = false, errors.New("docker is down")
	mu.Unlock()
	l = acquire(t, m, "c", "t3")
	if l.ID == crashed.ID {
		t.Fatal("instance handed out although Docker could not tell")
	}
	release(t, l)

	mu.Lock()
	answer.err = nil
	mu.Unlock()
	if err := m.Settle(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, i := range m.Instances() {
		if i.Holder != nil {
			t.Errorf("%s still held by %+v", i.Key(), i.Holder)
		}
	}
	// The released one is now the most recently used.
	got := acquire(t, m, "c", "t4")
	if got.ID != crashed.ID {
		t.Errorf("got %s, want the released %s", got.ID, crashed.ID)
	}
	if !exists(filepath.Join(got.Path, "half-written")) {
		t.Error("content lost")
	}
}

// Whatever a crash during a removal or a state write leaves behind is
// cleaned up; a directory without state (docker-worker's layout) is
// adopted.
func TestLoadCleansUp(t *testing.T) {
	f := newFixture(t)
	c := filepath.Join(f.dir, "c")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(c, ".removing-1111", "deep"), 0o755))
	must(os.WriteFile(filepath.Join(c, ".2222.json.tmp"), []byte("{"), 0o644))
	must(os.WriteFile(filepath.Join(c, "3333.json"), []byte(`{"created":"2026-01-01T00:00:00Z","lastUsed":"2026-01-01T00:00:00Z"}`), 0o644))
	must(os.MkdirAll(filepath.Join(c, "4444-from-docker-worker"), 0o755))
	must(os.MkdirAll(filepath.Join(c, "5555"), 0o755))
	must(os.WriteFile(filepath.Join(c, "5555.json"), []byte("not json"), 0o644))
	must(os.MkdirAll(filepath.Join(f.dir, "bad::name", "x"), 0o755))

	m := f.manager(nil)
	must(m.Load(t.Context()))
	for _, gone := range []string{".removing-1111", ".2222.json.tmp", "3333.json"} {
		if exists(filepath.Join(c, gone)) {
			t.Errorf("%s left", gone)
		}
	}
	inst := m.Instances()
	if len(inst) != 1 || inst[0].ID != "4444-from-docker-worker" || inst[0].Holder != nil {
		t.Fatalf("instances %+v, want the adopted directory alone", inst)
	}
	if !exists(filepath.Join(c, "4444-from-docker-worker.json")) {
		t.Error("adopted instance has no state file")
	}
	if !exists(filepath.Join(c, "5555")) || !exists(filepath.Join(f.dir, "bad::name")) {
		t.Error("instance with unreadable state, or unknown directory, was touched")
	}
	if l := acquire(t, m, "c", "t1"); l.ID != "4444-from-docker-worker" {
		t.Errorf("got %s, want the adopted instance", l.ID)
	}
}

// A missing root is an empty cache; Load is done once.
func TestLoadMissingRoot(t *testing.T) {
	m := cache.New(cache.Config{Dir: filepath.Join(t.TempDir(), "absent")})
	if err := m.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := m.Instances(); len(got) != 0 {
		t.Errorf("instances %v", got)
	}
}

func TestRemoveUnused(t *testing.T) {
	f := newFixture(t)
	m := f.manager(nil)
	fill := func(l *cache.Lease, n int) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(l.Path, "data"), bytes.Repeat([]byte("x"), n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a := acquire(t, m, "a", "t1")
	b := acquire(t, m, "b", "t2")
	c := acquire(t, m, "c", "t3")
	held := acquire(t, m, "held", "t4")
	fill(a, 64<<10)
	fill(b, 64<<10)
	fill(c, 64<<10)
	fill(held, 64<<10)
	release(t, b) // least recently used
	release(t, a)
	release(t, c)

	infos := m.Instances()
	if len(infos) != 4 {
		t.Fatalf("instances %+v", infos)
	}
	for _, i := range infos {
		if i.LastUsed.IsZero() || i.Created.IsZero() {
			t.Errorf("%s lacks times: %+v", i.Key(), i)
		}
	}

	freed, err := m.RemoveUnused(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if freed < 64<<10 {
		t.Errorf("freed %d bytes, want at least %d", freed, 64<<10)
	}
	if exists(b.Path) || !exists(a.Path) || !exists(c.Path) {
		t.Errorf("want only the least recently used (b) removed: a %v b %v c %v", exists(a.Path), exists(b.Path), exists(c.Path))
	}
	freed, err = m.RemoveUnused(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if freed < 2*64<<10 {
		t.Errorf("freed %d bytes, want at least %d", freed, 2*64<<10)
	}
	if exists(a.Path) || exists(c.Path) || !exists(held.Path) {
		t.Error("want every free instance removed and the held one kept")
	}
	if got := m.Instances(); len(got) != 1 || got[0].Name != "held" {
		t.Errorf("instances %+v", got)
	}
}

// RemoveUnused never deletes an instance held by a previous process's
// container.
func TestRemoveUnusedSparesStaleHolders(t *testing.T) {
	f := newFixture(t)
	l := acquire(t, f.manager(nil), "c", "crashed")
	m := f.manager(func(context.Context, cache.Holder) (bool, error) { return true, nil })
	if _, err := m.RemoveUnused(t.Context(), 0); err != nil {
		t.Fatal(err)
	}
	if !exists(l.Path) {
		t.Error("instance of a live container removed")
	}
}

// Remove deletes one free instance, refuses a held one and ignores a
// missing one.
func TestRemove(t *testing.T) {
	f := newFixture(t)
	m := f.manager(nil)
	free := acquire(t, m, "c", "t1")
	held := acquire(t, m, "c", "t2")
	if err := os.WriteFile(filepath.Join(free.Path, "data"), bytes.Repeat([]byte("x"), 32<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	release(t, free)
	n, err := m.Remove(t.Context(), "c", free.ID)
	if err != nil || n < 32<<10 {
		t.Errorf("Remove: %d bytes, %v; want at least %d", n, err, 32<<10)
	}
	if exists(free.Path) || exists(free.Path+".json") {
		t.Error("instance still on disk")
	}
	if _, err := m.Remove(t.Context(), "c", held.ID); !errors.Is(err, cache.ErrInUse) {
		t.Errorf("Remove of a held instance: %v, want ErrInUse", err)
	}
	if !exists(held.Path) {
		t.Error("held instance removed")
	}
	if n, err := m.Remove(t.Context(), "c", "no-such-instance"); n != 0 || err != nil {
		t.Errorf("Remove of a missing instance: %d, %v", n, err)
	}
	release(t, held)
	if l := acquire(t, m, "c", "t3"); l.ID != held.ID {
		t.Errorf("got %s, want %s", l.ID, held.ID)
	}
}

// Purge after Release leaves the instance, which another run may hold by
// then, alone.
func TestPurgeAfterRelease(t *testing.T) {
	f := newFixture(t)
	m := f.manager(nil)
	l := acquire(t, m, "c", "t1")
	release(t, l)
	next := acquire(t, m, "c", "t2")
	if err := l.Purge("late"); err != nil {
		t.Fatal(err)
	}
	release(t, next)
	if !exists(next.Path) {
		t.Error("instance removed by a released lease's Purge")
	}
}
