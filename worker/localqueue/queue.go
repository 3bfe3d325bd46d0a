package localqueue

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Config configures a [Queue].
type Config struct {
	// RootURL is the Taskcluster root URL clients use to reach the queue,
	// e.g. "http://127.0.0.1:8080". The queue API is served under
	// <RootURL>/api/queue/v1 and the object service under
	// <RootURL>/api/object/v1; storage URLs are built from it.
	RootURL string
	// DataDir is where artifact bytes are kept when Blobs is nil (under
	// DataDir/blobs). Required unless Blobs is set.
	DataDir string
	// Clients are the permanent clients that may call the queue.
	Clients []Client
	// AnonymousScopes are the scopes of requests without credentials. nil
	// means [DefaultAnonymousScopes]; an empty, non-nil slice grants none.
	AnonymousScopes []string
	// Roles expand scopes as the auth service's roles do: a client (or
	// temporary credentials, or the anonymous scopes) holding
	// `assume:<roleId>` has the role's scopes too. They must pass
	// [CheckRoles].
	Roles []Role
	// IssuerAccessToken is the secret of the "static/taskcluster/queue"
	// client, which signs the temporary credentials handed out with each
	// claim. When empty it is read from the Store (created on first use), so
	// that credentials stay valid across restarts of a durable queue.
	IssuerAccessToken string
	// ClaimWait is how long claimWork waits for work before answering with
	// no tasks. Default 20s.
	ClaimWait time.Duration
	// ClaimTimeout is how long a claim lasts (takenUntil = claim or reclaim
	// time + ClaimTimeout). Default 20m.
	ClaimTimeout time.Duration
	// ExpiryInterval is how often [Queue.Run] looks for expired claims and
	// passed deadlines. Default 1s.
	ExpiryInterval time.Duration
	// Store keeps the queue's state; nil means [NewMemStore]. Use
	// [OpenBoltStore] for a queue that survives restarts. The Queue closes
	// it in [Queue.Close].
	Store Store
	// Blobs keeps artifact and object bytes; nil means files under
	// DataDir/blobs, served by the queue itself.
	Blobs BlobStore
	// Publisher, when set, receives the queue's Pulse messages (see
	// [Message]); nil means no messages are produced.
	Publisher Publisher
	// Logger receives the queue's log; nil discards it.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// WorkerManager configures the worker-manager subset (see
	// workermanager.go).
	WorkerManager WorkerManagerConfig
}

// Client is a permanent Taskcluster client known to the queue.
type Client struct {
	ClientID    string   `json:"clientId"`
	AccessToken string   `json:"accessToken"`
	Scopes      []string `json:"scopes"`
}

// Default configuration values.
const (
	DefaultClaimWait      = 20 * time.Second
	DefaultClaimTimeout   = 20 * time.Minute
	DefaultExpiryInterval = time.Second
)

// DefaultAnonymousScopes are the read-only scopes requests without
// credentials get unless [Config].AnonymousScopes says otherwise: what the
// anonymous role of a public deployment usually grants.
func DefaultAnonymousScopes() []string {
	return []string{
		"queue:get-artifact:public/*",
		"queue:get-task:*",
		"queue:status:*",
		"queue:list-artifacts:*",
		"queue:list-task-group:*",
		"queue:list-dependent-tasks:*",
		"index:find-task:*",
		"index:list-namespaces:*",
		"index:list-tasks:*",
		"purge-cache:all-purge-requests",
		"purge-cache:purge-requests:*",
		"auth:expand-scopes",
		"auth:current-scopes",
	}
}

// Queue is the embedded queue. Create it with [New], serve [Queue.Handler]
// and run [Queue.Run] beside it (or use [Serve], which does both), and
// [Queue.Close] it when done.
type Queue struct {
	log          *slog.Logger
	now          func() time.Time
	store        Store // == commits
	commits      *groupStore
	blobs        BlobStore
	local        *localBlobs // == blobs when the queue serves the bytes itself
	publisher    Publisher
	issuerToken  string
	indexToken   string // of indexClientID, derived from issuerToken
	rootURL      string
	rootPath     string            // the path part of rootURL
	clients      map[string]Client // scopes expanded
	anonymous    []string          // expanded
	roles        []Role
	claimWait    time.Duration
	claimTimeout time.Duration
	expiryEvery  time.Duration
	started      time.Time
	nonces       nonceCache
	routes       []route
	outboxWake   chan struct{}
	wm           *workerManager

	// mu serialises every change of state, and guards the indexes below.
	mu sync.Mutex
	// queues are the pending runs per taskQueueId.
	queues map[string]*taskQueue
	// active holds the deadline and claim expiry of the unresolved tasks.
	active map[string]activeTask
	// groups indexes the tasks of each task group.
	groups map[string]*taskGroup
	// dependents maps a taskId to the tasks that depend on it.
	dependents map[string][]string
}

// activeTask is what the expiry loop needs to know about an unresolved task.
type activeTask struct {
	queueID    string
	deadline   time.Time
	pending    bool      // the last run is pending
	takenUntil time.Time // of the running run; zero when not running
}

// taskGroup is the in-memory index of one task group.
type taskGroup struct {
	schedulerID string
	taskIDs     []string // sorted
	expires     time.Time
}

// New checks cfg, fills in defaults and returns the queue, with its
// indexes rebuilt from cfg.Store.
func New(cfg Config) (*Queue, error) {
	root, err := url.Parse(strings.TrimSuffix(cfg.RootURL, "/"))
	if err != nil {
		return nil, fmt.Errorf("localqueue: RootURL: %w", err)
	}
	if (root.Scheme != "http" && root.Scheme != "https") || root.Host == "" || root.RawQuery != "" || root.Fragment != "" {
		return nil, fmt.Errorf("localqueue: RootURL %q must be an http(s) URL without query", cfg.RootURL)
	}
	q := &Queue{
		log:          cfg.Logger,
		now:          cfg.Now,
		store:        cfg.Store,
		blobs:        cfg.Blobs,
		publisher:    cfg.Publisher,
		issuerToken:  cfg.IssuerAccessToken,
		rootURL:      root.String(),
		rootPath:     root.EscapedPath(),
		clients:      map[string]Client{},
		anonymous:    slices.Clone(cfg.AnonymousScopes),
		claimWait:    cmpOr(cfg.ClaimWait, DefaultClaimWait),
		claimTimeout: cmpOr(cfg.ClaimTimeout, DefaultClaimTimeout),
		expiryEvery:  cmpOr(cfg.ExpiryInterval, DefaultExpiryInterval),
		outboxWake:   make(chan struct{}, 1),
		queues:       map[string]*taskQueue{},
		active:       map[string]activeTask{},
		groups:       map[string]*taskGroup{},
		dependents:   map[string][]string{},
		routes:       routeTable(),
	}
	if q.log == nil {
		q.log = slog.New(slog.DiscardHandler)
	}
	if q.wm, err = newWorkerManager(cfg.WorkerManager); err != nil {
		return nil, fmt.Errorf("localqueue: %w", err)
	}
	if q.now == nil {
		q.now = time.Now
	}
	if cfg.AnonymousScopes == nil {
		q.anonymous = DefaultAnonymousScopes()
	}
	if err := CheckRoles(cfg.Roles); err != nil {
		return nil, fmt.Errorf("localqueue: %w", err)
	}
	for _, r := range cfg.Roles {
		q.roles = append(q.roles, Role{RoleID: r.RoleID, Scopes: slices.Clone(r.Scopes)})
	}
	q.anonymous = q.expand(q.anonymous)
	if q.store == nil {
		q.store = NewMemStore()
	}
	q.commits = newGroupStore(q.store)
	q.store = q.commits
	for _, c := range cfg.Clients {
		switch {
		case c.ClientID == "" || c.AccessToken == "":
			return nil, fmt.Errorf("localqueue: client %q needs a clientId and an accessToken", c.ClientID)
		case c.ClientID == issuerClientID || c.ClientID == indexClientID:
			return nil, fmt.Errorf("localqueue: client %q is reserved for the queue itself", c.ClientID)
		}
		if _, dup := q.clients[c.ClientID]; dup {
			return nil, fmt.Errorf("localqueue: client %q configured twice", c.ClientID)
		}
		c.Scopes = q.expand(slices.Clone(c.Scopes))
		q.clients[c.ClientID] = c
	}
	ctx := context.Background()
	if q.issuerToken == "" {
		if q.issuerToken, err = q.store.Secret(ctx, "issuer-access-token"); err != nil {
			return nil, fmt.Errorf("localqueue: issuer secret: %w", err)
		}
	}
	idx := hmac.New(sha256.New, []byte(q.issuerToken))
	idx.Write([]byte("localqueue index client"))
	q.indexToken = base64.RawURLEncoding.EncodeToString(idx.Sum(nil))
	if q.blobs == nil {
		if cfg.DataDir == "" {
			return nil, errors.New("localqueue: DataDir is required when Blobs is not set")
		}
		dir := filepath.Join(cfg.DataDir, "blobs")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("localqueue: DataDir: %w", err)
		}
		m := hmac.New(sha256.New, []byte(q.issuerToken))
		m.Write([]byte("localqueue storage URLs"))
		q.local = &localBlobs{dir: dir, urlBase: q.rootURL + "/api/queue/v1/" + blobPrefix + "/", key: m.Sum(nil), log: q.log}
		q.blobs = q.local
	}
	q.started = q.clock()
	if err := q.nonces.load(ctx, q.store, q.log, q.now()); err != nil {
		return nil, fmt.Errorf("localqueue: %w", err)
	}
	if err := q.rebuild(ctx); err != nil {
		return nil, err
	}
	return q, nil
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// clock is the current time, UTC, at the millisecond precision of the wire.
func (q *Queue) clock() time.Time { return q.now().UTC().Truncate(time.Millisecond) }

// rebuild fills the indexes from the store.
func (q *Queue) rebuild(ctx context.Context) error {
	type pend struct {
		rec *TaskRecord
		at  time.Time
	}
	var pending []pend
	err := q.store.Each(ctx, func(rec *TaskRecord) error {
		q.indexLocked(rec, true)
		if n := len(rec.Runs); n > 0 && rec.Runs[n-1].State == statePending {
			pending = append(pending, pend{rec, rec.Runs[n-1].Scheduled})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("localqueue: load tasks: %w", err)
	}
	for _, g := range q.groups {
		slices.Sort(g.taskIDs)
	}
	slices.SortStableFunc(pending, func(a, b pend) int { return a.at.Compare(b.at) })
	for _, p := range pending {
		q.enqueueLocked(p.rec)
	}
	return nil
}

// indexLocked updates the indexes for rec, as stored. bulk skips keeping
// the group's task list sorted (rebuild sorts once at the end).
func (q *Queue) indexLocked(rec *TaskRecord, bulk bool) {
	id := rec.TaskID
	if rec.unresolved() {
		a := activeTask{queueID: rec.Task.TaskQueueID, deadline: mustTime(rec.Task.Deadline)}
		if n := len(rec.Runs); n > 0 {
			switch last := rec.Runs[n-1]; last.State {
			case stateRunning:
				a.takenUntil = last.TakenUntil
			case statePending:
				a.pending = true
			}
		}
		q.active[id] = a
	} else {
		delete(q.active, id)
	}
	g, ok := q.groups[rec.Task.TaskGroupID]
	if !ok {
		g = &taskGroup{schedulerID: rec.Task.SchedulerID}
		q.groups[rec.Task.TaskGroupID] = g
	}
	if exp := mustTime(rec.Task.Expires); exp.After(g.expires) {
		g.expires = exp
	}
	if bulk {
		g.taskIDs = append(g.taskIDs, id)
		for _, d := range rec.Task.Dependencies {
			q.dependents[d] = append(q.dependents[d], id)
		}
		return
	}
	if i, found := slices.BinarySearch(g.taskIDs, id); !found {
		g.taskIDs = slices.Insert(g.taskIDs, i, id)
		for _, d := range rec.Task.Dependencies {
			q.dependents[d] = append(q.dependents[d], id)
		}
	}
}

// Handler returns the HTTP handler serving the queue API, the object
// service and (for local storage) artifact bytes. Mount it at the root of
// RootURL's host: it expects full paths, <RootURL path>/api/queue/v1/....
func (q *Queue) Handler() http.Handler { return http.HandlerFunc(q.serveHTTP) }

// Run does the queue's background work until ctx is done: every
// ExpiryInterval it resolves runs whose claim expired (`claim-expired`,
// retried while retries remain) and tasks whose deadline passed
// (`deadline-exceeded`); with a Publisher, it delivers the outbox. It
// returns nil when ctx is done.
func (q *Queue) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if q.publisher != nil {
		wg.Go(func() { q.deliver(ctx) })
	}
	defer wg.Wait()
	t := time.NewTicker(q.expiryEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			q.expire(ctx)
		}
	}
}

// Close closes the store. Call it after [Queue.Run] and the server have
// stopped.
func (q *Queue) Close() error { return q.store.Close() }

// Serve serves q on ln and runs [Queue.Run] until ctx is done, then shuts
// the server down (waiting claims answer with no tasks). It returns nil
// after a shutdown caused by ctx, or the server's error. It does not close
// q.
func Serve(ctx context.Context, ln net.Listener, q *Queue) error {
	return ServeHandler(ctx, ln, q, q.Handler())
}

// ServeHandler is [Serve] with h in front of the queue: h serves the
// requests (typically q.Handler() and more beside it) while q runs.
func ServeHandler(ctx context.Context, ln net.Listener, q *Queue, h http.Handler) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv := &http.Server{
		Handler:           h,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(q.log.Handler(), slog.LevelWarn),
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = q.Run(ctx) })
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	var err error
	select {
	case err = <-errc:
		cancel()
	case <-ctx.Done():
		shutdownCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err = srv.Shutdown(shutdownCtx)
		stop()
		if serveErr := <-errc; !errors.Is(serveErr, http.ErrServerClosed) {
			err = errors.Join(err, serveErr)
		}
	}
	wg.Wait()
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("localqueue: serve: %w", err)
	}
	return nil
}

// tx collects one atomic change of the store, and what to do to the
// indexes once it is committed. Used with q.mu held.
type tx struct {
	q     *Queue
	ctx   context.Context
	recs  map[string]*TaskRecord
	order []string
	// artifacts are the artifact records changed, in order.
	artifacts []*ArtifactRecord
	objects   []*ObjectRecord
	msgs      []Message
	// pending lists the tasks whose last run became pending.
	pending []string
	// The index service's changes, by path, in the order first changed.
	indexed    map[string]*IndexedTaskRecord
	namespaces map[string]*NamespaceRecord
	idxOrder   []string
	nsOrder    []string
	purges     []*PurgeRecord
	deleted    []string
}

func (q *Queue) begin(ctx context.Context) *tx {
	return &tx{q: q, ctx: context.WithoutCancel(ctx), recs: map[string]*TaskRecord{}}
}

// get returns the task's record as modified so far in t, or as stored.
func (t *tx) get(taskID string) (*TaskRecord, error) {
	if rec, ok := t.recs[taskID]; ok {
		return rec, nil
	}
	return t.q.store.Get(t.ctx, taskID)
}

// put marks rec as part of the change.
func (t *tx) put(rec *TaskRecord) {
	if _, ok := t.recs[rec.TaskID]; !ok {
		t.order = append(t.order, rec.TaskID)
	}
	t.recs[rec.TaskID] = rec
}

// msg adds a Pulse message (dropped when no Publisher is configured).
func (t *tx) msg(m Message) {
	if t.q.publisher != nil {
		t.msgs = append(t.msgs, m)
	}
}

// msgOf is msg for a message built only when a Publisher will get it.
func (t *tx) msgOf(build func() Message) {
	if t.q.publisher != nil {
		t.msgs = append(t.msgs, build())
	}
}

// commit stores the change and updates the indexes.
func (t *tx) commit() error {
	c := Change{Artifacts: t.artifacts, Objects: t.objects, Messages: t.msgs, PurgeRequests: t.purges, DeleteIndexedTasks: t.deleted}
	for _, id := range t.order {
		c.Tasks = append(c.Tasks, t.recs[id])
	}
	for _, path := range t.idxOrder {
		c.IndexedTasks = append(c.IndexedTasks, t.indexed[path])
	}
	for _, path := range t.nsOrder {
		c.Namespaces = append(c.Namespaces, t.namespaces[path])
	}
	var seq uint64
	store := func(n *NonceRecord) error {
		if n != nil {
			c.Nonces = []NonceRecord{*n}
		}
		var err error
		seq, err = t.q.commits.apply(c)
		return err
	}
	var err error
	if n := pendingNonceOf(t.ctx); n != nil {
		err = n.withCommit(store) // the request's nonce with its first change
	} else {
		err = store(nil)
	}
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	for _, rec := range c.Tasks {
		t.q.indexLocked(rec, false)
	}
	for _, id := range t.pending {
		t.q.enqueueLocked(t.recs[id])
	}
	// A request's answer waits for durability in the router, after q.mu
	// is released; anything else waits here.
	if !durabilityDeferred(t.ctx) {
		if err := t.q.commits.wait(seq); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
	}
	if len(c.Messages) > 0 {
		t.q.wakeOutbox()
	}
	return nil
}

// isClosed tells whether err came from a closed store (the queue is going
// away) rather than a real failure.
func isClosed(err error) bool { return errors.Is(err, ErrClosed) }
