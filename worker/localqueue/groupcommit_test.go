package localqueue

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/slugid"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// gatedStore holds its first CommitBatch until release is closed, so that
// a test can pile changes up behind it.
type gatedStore struct {
	Store
	entered chan struct{} // closed when the first CommitBatch starts
	release chan struct{}
	once    sync.Once
	opened  sync.Once
}

// waitEntered waits for the first write to be held.
func (s *gatedStore) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-s.entered:
	case <-time.After(time.Minute):
		t.Fatal("no change was written within a minute")
	}
}

// open lets the held write go on; it is idempotent.
func (s *gatedStore) open() { s.opened.Do(func() { close(s.release) }) }

func newGatedStore(inner Store) *gatedStore {
	return &gatedStore{Store: inner, entered: make(chan struct{}), release: make(chan struct{})}
}

func (s *gatedStore) CommitBatch(ctx context.Context, cs []Change) error {
	s.once.Do(func() {
		close(s.entered)
		<-s.release
	})
	return s.Store.(batchCommitter).CommitBatch(ctx, cs)
}

// waitApplied waits until g has applied n changes.
func waitApplied(t *testing.T, g *groupStore, n uint64) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); g.appliedSeq() < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("applied %d changes, want %d", g.appliedSeq(), n)
		}
	}
}

// snapshotStore opens a copy of the bbolt file at path as it is on disk
// now, as a restart after a crash at this moment would find it.
func snapshotStore(t *testing.T, path string) Store {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), "snapshot.db")
	if err := os.WriteFile(cp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := OpenBoltStore(cp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Concurrent commits share transactions (and fsyncs): while one write is
// in progress, the commits behind it are written together by the next.
// Each Commit returns only once its change is in the file.
func TestGroupCommitSharesFsyncs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	bolt, err := OpenBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	gated := newGatedStore(bolt)
	g := newGroupStore(gated)
	defer g.Close()
	defer gated.open() // before Close, also when the test fails

	const n = 64
	ctx := t.Context()
	var returned atomic.Int64
	errs := make(chan error, n)
	commit := func(i int) {
		err := g.Commit(ctx, Change{Tasks: []*TaskRecord{{TaskID: fmt.Sprintf("task-%02d", i)}}})
		returned.Add(1)
		errs <- err
	}
	go commit(0)
	gated.waitEntered(t) // the first write is in progress, held
	for i := 1; i < n; i++ {
		go commit(i)
	}
	waitApplied(t, g, n)
	if r := returned.Load(); r != 0 {
		t.Fatalf("%d commits returned before their change was written", r)
	}
	// Every change is visible to reads already.
	if _, err := g.Get(ctx, "task-63"); err != nil {
		t.Fatalf("Get of an applied change: %v", err)
	}
	gated.open()
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := g.commits.Load(); got != 2 {
		t.Errorf("%d transactions for %d concurrent commits, want 2 (the held one, then all the others)", got, n)
	}
	if got := g.changes.Load(); got != n {
		t.Errorf("transactions carried %d changes, want %d", got, n)
	}
	// Nothing is left staged, and all is in the file.
	if len(g.tasks) != 0 {
		t.Errorf("%d records still staged after every commit returned", len(g.tasks))
	}
	snap := snapshotStore(t, path)
	for i := range n {
		if _, err := snap.Get(ctx, fmt.Sprintf("task-%02d", i)); err != nil {
			t.Errorf("after a crash-like reopen: %v", err)
		}
	}
}

// A failed write fails every commit waiting on it and every later call.
func TestGroupCommitFailurePoisons(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	bolt, err := OpenBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	g := newGroupStore(bolt)
	ctx := t.Context()
	if err := g.Commit(ctx, Change{Tasks: []*TaskRecord{{TaskID: "before"}}}); err != nil {
		t.Fatal(err)
	}
	bolt.Close() // the next write fails
	if err := g.Commit(ctx, Change{Tasks: []*TaskRecord{{TaskID: "after"}}}); err == nil {
		t.Fatal("a commit whose write failed returned nil")
	}
	if _, err := g.Get(ctx, "before"); err == nil {
		t.Error("Get on a failed store returned nil error")
	}
	if _, err := g.apply(Change{}); err == nil {
		t.Error("apply on a failed store returned nil error")
	}
}

// The queue holds each answer until its change is durable: with the first
// write held, every concurrent createTask has been applied and none has
// been answered; after it, all are answered and all are in the file, in
// fewer transactions than requests.
func TestQueueAnswersOnlyDurableChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	bolt, err := OpenBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	gated := newGatedStore(bolt)
	e := newEnv(t, func(c *Config) { c.Store = gated })
	t.Cleanup(func() { e.q.Close() })
	t.Cleanup(gated.open) // runs first, also when the test fails
	client := tc.New(tc.Config{RootURL: e.root, Credentials: &adminCreds, Retries: -1})

	const n = 16
	def, err := json.Marshal(e.taskDef(testQueueID))
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = slugid.Nice()
	}
	base := e.q.commits.appliedSeq()
	var answered atomic.Int64
	errs := make(chan error, n)
	create := func(i int) {
		_, err := client.CreateTask(t.Context(), ids[i], def)
		answered.Add(1)
		errs <- err
	}
	go create(0)
	gated.waitEntered(t)
	for i := 1; i < n; i++ {
		go create(i)
	}
	waitApplied(t, e.q.commits, base+n)
	time.Sleep(20 * time.Millisecond) // room for an answer that should not come
	if a := answered.Load(); a != 0 {
		t.Fatalf("%d createTask calls answered before their task was written", a)
	}
	gated.open()
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if c, ch := e.q.commits.commits.Load(), e.q.commits.changes.Load(); c >= ch {
		t.Errorf("%d transactions for %d changes: commits were not grouped", c, ch)
	}
	snap := snapshotStore(t, path)
	for _, id := range ids {
		if _, err := snap.Get(t.Context(), id); err != nil {
			t.Errorf("answered task missing after a crash-like reopen: %v", err)
		}
	}
}

// BenchmarkCreateClaimResolve drives create → claim → resolve over HTTP
// from parallel clients against a bbolt store, as the bench does; run it
// with -cpuprofile to see where a request's time goes.
func BenchmarkCreateClaimResolve(b *testing.B) {
	dir := b.TempDir()
	store, err := OpenBoltStore(filepath.Join(dir, "queue.db"))
	if err != nil {
		b.Fatal(err)
	}
	srvQ, root := benchQueue(b, store, dir)
	defer srvQ.Close()
	client := tc.New(tc.Config{RootURL: root, Credentials: &adminCreds})
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		wt := fmt.Sprintf("b%d", n.Add(1))
		now := time.Now().UTC()
		def, _ := json.Marshal(map[string]any{
			"taskQueueId": "bench/" + wt, "created": now.Format(time.RFC3339Nano), "deadline": now.Add(time.Hour).Format(time.RFC3339Nano),
			"payload":  map[string]any{"image": "busybox", "command": []string{"true"}, "maxRunTime": 60},
			"metadata": map[string]any{"name": "b", "description": "b", "owner": "b@example.com", "source": "https://example.com/b"},
		})
		for pb.Next() {
			if _, err := client.CreateTask(context.Background(), slugid.Nice(), def); err != nil {
				b.Error(err)
				return
			}
			resp, err := client.ClaimWork(context.Background(), "bench/"+wt, tc.ClaimWorkRequest{Tasks: 1, WorkerGroup: "wg", WorkerID: wt})
			if err != nil || len(resp.Tasks) != 1 {
				b.Error("claimWork", err)
				return
			}
			c := resp.Tasks[0]
			if _, err := client.WithCredentials(c.Credentials).ReportCompleted(context.Background(), c.Status.TaskID, c.RunID); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// benchQueue serves a queue on store for a benchmark.
func benchQueue(b *testing.B, store Store, dir string) (*localServer, string) {
	b.Helper()
	srv := newLocalServer(b)
	q, err := New(Config{
		RootURL: srv.root, DataDir: dir, Store: store, IssuerAccessToken: testIssuerToken,
		Clients: []Client{{ClientID: adminCreds.ClientID, AccessToken: adminCreds.AccessToken, Scopes: []string{"*"}}},
	})
	if err != nil {
		b.Fatal(err)
	}
	srv.start(q)
	return srv, srv.root
}

// localServer is an httptest server for a queue made after its address
// is known.
type localServer struct {
	srv  *httptest.Server
	root string
	q    *Queue
}

func newLocalServer(tb testing.TB) *localServer {
	tb.Helper()
	s := &localServer{srv: httptest.NewUnstartedServer(nil)}
	s.root = "http://" + s.srv.Listener.Addr().String()
	return s
}

func (s *localServer) start(q *Queue) {
	s.q = q
	s.srv.Config.Handler = q.Handler()
	s.srv.Start()
}

func (s *localServer) Close() error {
	s.srv.Close()
	return s.q.Close()
}

// BenchmarkClaimResolve is one client's claimWork + reportCompleted over
// HTTP, with a task created before each (not timed), on store.
func BenchmarkClaimResolve(b *testing.B) {
	for _, kind := range []string{"memory", "bbolt"} {
		b.Run(kind, func(b *testing.B) {
			dir := b.TempDir()
			store := NewMemStore()
			if kind == "bbolt" {
				var err error
				if store, err = OpenBoltStore(filepath.Join(dir, "queue.db")); err != nil {
					b.Fatal(err)
				}
			}
			srv, root := benchQueue(b, store, dir)
			defer srv.Close()
			client := tc.New(tc.Config{RootURL: root, Credentials: &adminCreds})
			now := time.Now().UTC()
			def, _ := json.Marshal(map[string]any{
				"taskQueueId": "bench/rt", "created": now.Format(time.RFC3339Nano), "deadline": now.Add(time.Hour).Format(time.RFC3339Nano),
				"payload":  map[string]any{"image": "busybox", "command": []string{"true"}, "maxRunTime": 60},
				"metadata": map[string]any{"name": "b", "description": "b", "owner": "b@example.com", "source": "https://example.com/b"},
			})
			ctx := context.Background()
			for b.Loop() {
				b.StopTimer()
				if _, err := client.CreateTask(ctx, slugid.Nice(), def); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				resp, err := client.ClaimWork(ctx, "bench/rt", tc.ClaimWorkRequest{Tasks: 1, WorkerGroup: "wg", WorkerID: "w"})
				if err != nil || len(resp.Tasks) != 1 {
					b.Fatal("claimWork", err)
				}
				c := resp.Tasks[0]
				if _, err := client.WithCredentials(c.Credentials).ReportCompleted(ctx, c.Status.TaskID, c.RunID); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
