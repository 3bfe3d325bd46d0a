package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"go.dockerworker.dev/docker-worker/worker/localqueue"
	"go.dockerworker.dev/docker-worker/worker/localqueue/pulse"
	"go.dockerworker.dev/docker-worker/worker/localqueue/s3blob"
	"go.dockerworker.dev/docker-worker/worker/localqueue/webui"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// Defaults for the fields of [Config] and [Options] left empty.
const (
	DefaultListen = "127.0.0.1:8080"
	// AdminClientID is the client Start generates in the data directory.
	AdminClientID = "local-admin"
)

// Options are the settings of [Start] that are not in the config file.
type Options struct {
	// ClaimWait is how long claimWork waits for work; zero means the
	// queue's default.
	ClaimWait time.Duration
	// WithAdmin adds the data directory's admin client (clientId
	// local-admin, scope "*", created on first use and kept in
	// <DataDir>/client.json) even when the config names clients; without
	// it the admin client is added only when the config names none.
	WithAdmin bool
	// Logger receives the queue's log; nil discards it.
	Logger *slog.Logger
	// UIAdmin lets the web page sign requests for the admin client (see
	// [webui.Config].Admin): anyone who can load the page acts as the
	// admin. It needs the admin client (WithAdmin, or a config without
	// clients).
	UIAdmin bool
}

// Queue is a queue started by [Start].
type Queue struct {
	// RootURL is where clients reach the queue.
	RootURL string
	// DataDir is where it keeps its state.
	DataDir string
	// Admin are the credentials of the data directory's admin client, when
	// it is in use (see [Options].WithAdmin); nil otherwise.
	Admin *tc.Credentials
	// PulseURL is the broker the queue publishes its messages on (the
	// config's pulse.url); "" when it publishes none. A worker beside the
	// queue listens there for the task-exception messages of its runs.
	PulseURL string

	done chan struct{}
	err  error
}

// Wait blocks until the queue has stopped (after the context given to
// [Start] is done) and its store is closed, and returns why it stopped: nil
// after a shutdown caused by the context.
func (q *Queue) Wait() error {
	<-q.done
	return q.err
}

// Start opens the queue's store in cfg.DataDir (default [DefaultDataDir]),
// listens on cfg.Listen (default [DefaultListen]) and serves the queue in
// the background until ctx is done; then it shuts the server down, closes
// the Pulse connection and the store, and [Queue.Wait] returns. cfg is
// validated first.
func Start(ctx context.Context, cfg Config, opts Options) (*Queue, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("queue config: %w", err)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	listen := cmpOr(cfg.Listen, DefaultListen)
	dataDir := cmpOr(cfg.DataDir, DefaultDataDir())

	qc := localqueue.Config{
		DataDir:      dataDir,
		ClaimWait:    opts.ClaimWait,
		ClaimTimeout: cfg.ClaimTimeout,
		Roles:        cfg.localRoles(),
		Logger:       logger,
	}
	if cfg.AnonymousScopes != nil {
		qc.AnonymousScopes = append([]string{}, *cfg.AnonymousScopes...)
	}
	for _, c := range cfg.Clients {
		qc.Clients = append(qc.Clients, localqueue.Client{ClientID: c.ClientID, AccessToken: c.AccessToken, Scopes: slices.Clone(c.Scopes)})
	}
	q := &Queue{DataDir: dataDir, PulseURL: cfg.Pulse.URL, done: make(chan struct{})}
	if opts.WithAdmin || len(cfg.Clients) == 0 {
		admin, err := loadOrCreateAdmin(dataDir)
		if err != nil {
			return nil, err
		}
		q.Admin = &admin
		qc.Clients = append(qc.Clients, localqueue.Client{ClientID: admin.ClientID, AccessToken: admin.AccessToken, Scopes: []string{"*"}})
	}
	if s := cfg.Storage.S3; s != nil {
		store, err := s3blob.New(ctx, s3blob.Config{
			Endpoint: s.Endpoint, Region: s.Region, Bucket: s.Bucket, Prefix: s.Prefix, PathStyle: s.PathStyle,
			AccessKeyID: s.AccessKeyID, SecretAccessKey: s.SecretAccessKey,
		})
		if err != nil {
			return nil, err
		}
		if err := store.EnsureBucket(ctx); err != nil {
			return nil, err
		}
		qc.Blobs = store
	}
	var pub *pulse.Publisher
	if cfg.Pulse.URL != "" {
		var err error
		if pub, err = pulse.New(pulse.Config{URL: cfg.Pulse.URL, Logger: logger}); err != nil {
			return nil, err
		}
		qc.Publisher = pub
	}
	closePub := func() {
		if pub != nil {
			pub.Close()
		}
	}
	store, err := localqueue.OpenBoltStore(filepath.Join(dataDir, "queue.db"))
	if err != nil {
		closePub()
		return nil, err
	}
	qc.Store = store
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		store.Close()
		closePub()
		return nil, fmt.Errorf("listen: %w", err)
	}
	q.RootURL = cmpOr(cfg.RootURL, "http://"+ln.Addr().String())
	qc.RootURL = q.RootURL
	lq, err := localqueue.New(qc)
	if err != nil {
		ln.Close()
		store.Close()
		closePub()
		return nil, err
	}
	uiCfg := webui.Config{RootURL: q.RootURL, Tasks: lq, Logger: logger.With("component", "webui")}
	if opts.UIAdmin {
		if q.Admin == nil {
			ln.Close()
			store.Close()
			closePub()
			return nil, errors.New("the web page's admin signing needs the admin client, which this queue does not have (its config names clients)")
		}
		uiCfg.Admin = q.Admin
	}
	ui, err := webui.New(uiCfg)
	if err != nil {
		ln.Close()
		store.Close()
		closePub()
		return nil, err
	}
	go func() {
		defer close(q.done)
		err := localqueue.ServeHandler(ctx, ln, lq, Handler(q.RootURL, lq.Handler(), ui))
		closePub()
		q.err = errors.Join(err, lq.Close())
	}()
	logger.Info("embedded queue serving", "rootUrl", q.RootURL, "dataDir", dataDir, "s3", qc.Blobs != nil, "pulse", pub != nil,
		"webPage", q.RootURL+"/", "terminal", ui.TerminalBuilt(), "uiAdmin", uiCfg.Admin != nil)
	return q, nil
}

func cmpOr(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

// loadOrCreateAdmin returns the admin client kept in dir/client.json,
// creating it on first use, so that the credentials handed out stay valid
// across restarts.
func loadOrCreateAdmin(dir string) (tc.Credentials, error) {
	path := filepath.Join(dir, "client.json")
	var c tc.Credentials
	if data, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(data, &c); err != nil || c.ClientID == "" || c.AccessToken == "" {
			return tc.Credentials{}, fmt.Errorf("%s: not a valid client file; remove it to generate a new client", path)
		}
		return tc.Credentials{ClientID: c.ClientID, AccessToken: c.AccessToken}, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return c, fmt.Errorf("admin client: %w", err)
	}
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return c, fmt.Errorf("admin client: %w", err)
	}
	c = tc.Credentials{ClientID: AdminClientID, AccessToken: base64.RawURLEncoding.EncodeToString(secret[:])}
	data, _ := json.MarshalIndent(struct {
		ClientID    string `json:"clientId"`
		AccessToken string `json:"accessToken"`
	}{c.ClientID, c.AccessToken}, "", "  ")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return c, fmt.Errorf("admin client: %w", err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return c, fmt.Errorf("admin client: %w", err)
	}
	return c, nil
}
