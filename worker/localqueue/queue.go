package localqueue

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// Config configures a [Queue].
type Config struct {
	// RootURL is the Taskcluster root URL clients use to reach the queue,
	// e.g. "http://127.0.0.1:8080". The API is served under
	// <RootURL>/api/queue/v1, and artifact URLs are built from it.
	RootURL string
	// DataDir is where artifact bytes are kept. Required.
	DataDir string
	// Clients are the permanent clients that may call the queue.
	Clients []Client
	// IssuerAccessToken is the secret of the "static/taskcluster/queue"
	// client, which signs the temporary credentials handed out with each
	// claim. Generated when empty.
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
	// Store keeps the task records; nil means [NewMemStore].
	Store Store
	// Logger receives the queue's log; nil discards it.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Client is a permanent Taskcluster client known to the queue.
type Client struct {
	ClientID    string
	AccessToken string
	Scopes      []string
}

// Default configuration values.
const (
	DefaultClaimWait      = 20 * time.Second
	DefaultClaimTimeout   = 20 * time.Minute
	DefaultExpiryInterval = time.Second
)

// Queue is the embedded queue. Create it with [New], serve [Queue.Handler]
// and run [Queue.Run] beside it (or use [Serve], which does both).
type Queue struct {
	log          *slog.Logger
	now          func() time.Time
	store        Store
	issuerToken  string
	blobKey      []byte
	apiBase      string // <RootURL>/api/queue/v1
	basePath     string // the path part of apiBase
	dataDir      string
	clients      map[string]Client
	claimWait    time.Duration
	claimTimeout time.Duration
	expiryEvery  time.Duration
	started      time.Time
	nonces       nonceCache
	routes       []route

	// mu serialises every change of task state, and guards the indexes.
	mu sync.Mutex
	// queues are the pending runs per taskQueueId.
	queues map[string]*taskQueue
	// active holds the taskIds that are not resolved yet.
	active map[string]struct{}
	// groups maps taskGroupId to the schedulerId all its tasks share.
	groups map[string]string
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
	if cfg.DataDir == "" {
		return nil, errors.New("localqueue: DataDir is required")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("localqueue: DataDir: %w", err)
	}
	q := &Queue{
		log:          cfg.Logger,
		now:          cfg.Now,
		store:        cfg.Store,
		issuerToken:  cfg.IssuerAccessToken,
		apiBase:      root.String() + "/api/queue/v1",
		basePath:     root.EscapedPath() + "/api/queue/v1",
		dataDir:      cfg.DataDir,
		clients:      map[string]Client{},
		claimWait:    cmpOr(cfg.ClaimWait, DefaultClaimWait),
		claimTimeout: cmpOr(cfg.ClaimTimeout, DefaultClaimTimeout),
		expiryEvery:  cmpOr(cfg.ExpiryInterval, DefaultExpiryInterval),
		queues:       map[string]*taskQueue{},
		active:       map[string]struct{}{},
		groups:       map[string]string{},
		routes:       routeTable(),
	}
	if q.log == nil {
		q.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if q.now == nil {
		q.now = time.Now
	}
	if q.store == nil {
		q.store = NewMemStore()
	}
	if q.issuerToken == "" {
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("localqueue: generate issuer secret: %w", err)
		}
		q.issuerToken = base64.RawURLEncoding.EncodeToString(b[:])
	}
	m := hmac.New(sha256.New, []byte(q.issuerToken))
	m.Write([]byte("localqueue artifact URLs"))
	q.blobKey = m.Sum(nil)
	for _, c := range cfg.Clients {
		switch {
		case c.ClientID == "" || c.AccessToken == "":
			return nil, fmt.Errorf("localqueue: client %q needs a clientId and an accessToken", c.ClientID)
		case c.ClientID == issuerClientID:
			return nil, fmt.Errorf("localqueue: client %q is reserved for the queue itself", c.ClientID)
		}
		if _, dup := q.clients[c.ClientID]; dup {
			return nil, fmt.Errorf("localqueue: client %q configured twice", c.ClientID)
		}
		c.Scopes = slices.Clone(c.Scopes)
		q.clients[c.ClientID] = c
	}
	q.started = q.clock()
	if err := q.rebuild(context.Background()); err != nil {
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
		q.groups[rec.Task.TaskGroupID] = rec.Task.SchedulerID
		if rec.unresolved() {
			q.active[rec.TaskID] = struct{}{}
		}
		if n := len(rec.Runs); n > 0 && rec.Runs[n-1].State == statePending {
			pending = append(pending, pend{rec, rec.Runs[n-1].Scheduled})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("localqueue: load tasks: %w", err)
	}
	slices.SortStableFunc(pending, func(a, b pend) int { return a.at.Compare(b.at) })
	for _, p := range pending {
		q.enqueueLocked(p.rec)
	}
	return nil
}

// Handler returns the HTTP handler serving the queue API (and artifact
// bytes). Mount it at the root of RootURL's host: it expects the full
// path, <RootURL path>/api/queue/v1/....
func (q *Queue) Handler() http.Handler { return http.HandlerFunc(q.serveHTTP) }

// Run does the queue's background work until ctx is done: every
// ExpiryInterval it resolves runs whose claim expired (`claim-expired`,
// retried while retries remain) and tasks whose deadline passed
// (`deadline-exceeded`). It returns nil when ctx is done.
func (q *Queue) Run(ctx context.Context) error {
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

// Serve serves q on ln and runs [Queue.Run] until ctx is done, then shuts
// the server down (waiting claims answer with no tasks). It returns nil
// after a shutdown caused by ctx, or the server's error.
func Serve(ctx context.Context, ln net.Listener, q *Queue) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv := &http.Server{
		Handler:           q.Handler(),
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(q.log.Handler(), slog.LevelWarn),
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = q.Run(ctx)
	}()
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
