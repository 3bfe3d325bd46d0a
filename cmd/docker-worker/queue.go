package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"go.yaml.in/yaml/v3"

	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/localqueue"
	"go.dockerworker.dev/docker-worker/worker/localqueue/pulse"
	"go.dockerworker.dev/docker-worker/worker/localqueue/s3blob"
)

// queueFlags are the flags shared by queue and dev.
type queueFlags struct {
	fs        *flag.FlagSet
	config    *string
	listen    *string
	rootURL   *string
	dataDir   *string
	claimWait *time.Duration
	logLevel  *string
}

// addQueueFlags adds the queue's flags; configFlag names the flag of the
// queue config file.
func addQueueFlags(fs *flag.FlagSet, configFlag, configHelp string) queueFlags {
	return queueFlags{
		fs:        fs,
		config:    fs.String(configFlag, "", configHelp),
		listen:    fs.String("listen", "127.0.0.1:8080", "address the queue listens on"),
		rootURL:   fs.String("root-url", "", "rootUrl clients use (default http://<listen address>)"),
		dataDir:   fs.String("data-dir", defaultDataDir(), "where the queue keeps its state, client secret and artifacts"),
		claimWait: fs.Duration("claim-wait", 20*time.Second, "how long claimWork waits for a task"),
		logLevel:  fs.String("log-level", "info", "log level: debug, info, warn, error"),
	}
}

// defaultDataDir is $XDG_STATE_HOME/docker-worker, else ~/.local/state/docker-worker.
func defaultDataDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "docker-worker")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "docker-worker")
	}
	return filepath.Join(os.TempDir(), "docker-worker")
}

// queueFile is the `queue --config` file (YAML or JSON). Flags given on
// the command line win over its listen, rootUrl and dataDir.
type queueFile struct {
	Listen  string `yaml:"listen"`
	RootURL string `yaml:"rootUrl"`
	DataDir string `yaml:"dataDir"`
	// Clients may call the queue; their scopes decide what they may do.
	Clients []struct {
		ClientID    string   `yaml:"clientId"`
		AccessToken string   `yaml:"accessToken"`
		Scopes      []string `yaml:"scopes"`
	} `yaml:"clients"`
	// AnonymousScopes replaces the default scopes of requests without
	// credentials (an empty list grants none).
	AnonymousScopes *[]string     `yaml:"anonymousScopes"`
	ClaimTimeout    time.Duration `yaml:"claimTimeout"`
	Storage         struct {
		S3 *struct {
			Endpoint        string `yaml:"endpoint"`
			Region          string `yaml:"region"`
			Bucket          string `yaml:"bucket"`
			Prefix          string `yaml:"prefix"`
			PathStyle       bool   `yaml:"pathStyle"`
			AccessKeyID     string `yaml:"accessKeyId"`
			SecretAccessKey string `yaml:"secretAccessKey"`
		} `yaml:"s3"`
	} `yaml:"storage"`
	Pulse struct {
		URL string `yaml:"url"`
	} `yaml:"pulse"`
}

func readQueueFile(path string) (*queueFile, error) {
	var qf queueFile
	if path == "" {
		return &qf, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&qf); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for i, c := range qf.Clients {
		if c.ClientID == "" || c.AccessToken == "" {
			return nil, fmt.Errorf("%s: clients[%d]: clientId and accessToken are required", path, i)
		}
	}
	return &qf, nil
}

// localClient is the generated client kept in the data directory, so the
// exported credentials stay valid across restarts.
type localClient struct {
	ClientID    string `json:"clientId"`
	AccessToken string `json:"accessToken"`
}

func loadOrCreateClient(dir string) (localClient, error) {
	path := filepath.Join(dir, "client.json")
	var c localClient
	if data, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(data, &c); err != nil || c.ClientID == "" || c.AccessToken == "" {
			return c, fmt.Errorf("%s: not a valid client file; remove it to generate a new client", path)
		}
		return c, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return c, err
	}
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return c, err
	}
	c = localClient{ClientID: "local-admin", AccessToken: base64.RawURLEncoding.EncodeToString(secret[:])}
	data, _ := json.MarshalIndent(c, "", "  ")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return c, err
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return c, err
	}
	return c, nil
}

// runningQueue is a started embedded queue.
type runningQueue struct {
	rootURL string
	// generated is the data directory's local client, when in use.
	generated *localClient
	// done yields Serve's error once the context is done and the store is
	// closed.
	done <-chan error
}

// startQueue opens the store, listens and serves the embedded queue in the
// background. withGenerated adds the data directory's local client (dev
// always does; queue does when its config names no clients).
func startQueue(ctx context.Context, f queueFlags, withGenerated bool, logger *slog.Logger) (*runningQueue, error) {
	qf, err := readQueueFile(*f.config)
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	listen, rootURL, dataDir := *f.listen, *f.rootURL, *f.dataDir
	if qf.Listen != "" && !set["listen"] {
		listen = qf.Listen
	}
	if qf.RootURL != "" && !set["root-url"] {
		rootURL = qf.RootURL
	}
	if qf.DataDir != "" && !set["data-dir"] {
		dataDir = qf.DataDir
	}

	cfg := localqueue.Config{
		DataDir:      dataDir,
		ClaimWait:    *f.claimWait,
		ClaimTimeout: qf.ClaimTimeout,
		Logger:       logger.With("component", "queue"),
	}
	if qf.AnonymousScopes != nil {
		cfg.AnonymousScopes = append([]string{}, *qf.AnonymousScopes...)
	}
	for _, c := range qf.Clients {
		cfg.Clients = append(cfg.Clients, localqueue.Client{ClientID: c.ClientID, AccessToken: c.AccessToken, Scopes: c.Scopes})
	}
	rq := &runningQueue{}
	if withGenerated || len(qf.Clients) == 0 {
		c, err := loadOrCreateClient(dataDir)
		if err != nil {
			return nil, err
		}
		rq.generated = &c
		cfg.Clients = append(cfg.Clients, localqueue.Client{ClientID: c.ClientID, AccessToken: c.AccessToken, Scopes: []string{"*"}})
	}
	if s := qf.Storage.S3; s != nil {
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
		cfg.Blobs = store
	}
	var pub *pulse.Publisher
	if qf.Pulse.URL != "" {
		if pub, err = pulse.New(pulse.Config{URL: qf.Pulse.URL, Logger: cfg.Logger}); err != nil {
			return nil, err
		}
		cfg.Publisher = pub
	}
	if cfg.Store, err = localqueue.OpenBoltStore(filepath.Join(dataDir, "queue.db")); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		cfg.Store.Close()
		return nil, fmt.Errorf("listen: %w", err)
	}
	if rootURL == "" {
		rootURL = "http://" + ln.Addr().String()
	}
	cfg.RootURL = rootURL
	q, err := localqueue.New(cfg)
	if err != nil {
		ln.Close()
		cfg.Store.Close()
		return nil, err
	}
	rq.rootURL = rootURL
	done := make(chan error, 1)
	go func() {
		err := localqueue.Serve(ctx, ln, q)
		if pub != nil {
			pub.Close()
		}
		done <- errors.Join(err, q.Close())
	}()
	rq.done = done
	logger.Info("embedded queue serving", "rootUrl", rootURL, "dataDir", dataDir, "s3", cfg.Blobs != nil, "pulse", pub != nil)
	return rq, nil
}

// printExports writes the shell line that points Taskcluster clients at
// the queue (with the generated client's credentials, when there is one).
func printExports(w io.Writer, q *runningQueue) {
	if q.generated == nil {
		fmt.Fprintf(w, "export %s=%s\n", config.EnvRootURL, q.rootURL)
		return
	}
	fmt.Fprintf(w, "export %s=%s %s=%s %s=%s\n", config.EnvRootURL, q.rootURL,
		config.EnvClientID, q.generated.ClientID, config.EnvAccessToken, q.generated.AccessToken)
}

func runQueue(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("queue", "queue [flags]", stderr)
	qf := addQueueFlags(fs, "config", "queue config file: clients, storage (local or S3), Pulse (see README)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	logger := newLogger(stderr, *qf.logLevel)
	q, err := startQueue(ctx, qf, false, logger)
	if err != nil {
		fmt.Fprintf(stderr, "docker-worker: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "embedded queue at %s; use it with:\n", q.rootURL)
	printExports(stdout, q)
	if err := <-q.done; err != nil {
		fmt.Fprintf(stderr, "docker-worker: queue: %v\n", err)
		return 1
	}
	return 0
}

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("dev", "dev [flags]", stderr)
	qf := addQueueFlags(fs, "queue-config", "queue config file, as 'docker-worker queue --config' reads (optional)")
	cfgPath := fs.String("config", "", "worker config file (optional; rootUrl and credentials come from the embedded queue)")
	capacity := fs.Int("capacity", 0, "tasks run at once (default: from --config, else 2)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	logger := newLogger(stderr, *qf.logLevel)
	qctx, stopQueue := context.WithCancel(context.Background())
	defer stopQueue()
	q, err := startQueue(qctx, qf, true, logger)
	if err != nil {
		fmt.Fprintf(stderr, "docker-worker: %v\n", err)
		return 1
	}
	// One-machine defaults, which --config may override: the live log is
	// served on loopback only, and a cancelled task stops within a second.
	cfg := config.Default()
	cfg.Capacity = 2
	cfg.Logging.LiveLogBindAddress = "127.0.0.1"
	cfg.Task.StatusPollInterval = 1000
	if *cfgPath != "" {
		if err := config.ReadFile(*cfgPath, cfg); err != nil {
			fmt.Fprintf(stderr, "docker-worker: bad configuration:\n%v\n", err)
			return 1
		}
	}
	if *capacity > 0 {
		cfg.Capacity = *capacity
	}
	cfg.RootURL = q.rootURL
	cfg.Taskcluster = config.Credentials{ClientID: q.generated.ClientID, AccessToken: q.generated.AccessToken}
	for _, d := range []struct {
		v   *string
		def string
	}{
		{&cfg.ProvisionerID, devProvisionerID}, {&cfg.WorkerType, devWorkerType},
		{&cfg.WorkerGroup, "local"}, {&cfg.WorkerID, "dev"},
	} {
		if *d.v == "" {
			*d.v = d.def
		}
	}
	if cfg.PublicIP == "" {
		cfg.PublicIP = "127.0.0.1"
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "docker-worker: bad configuration:\n%v\n", err)
		return 1
	}
	w, closeFn, err := buildWorker(ctx, cfg, logger)
	if err != nil {
		fmt.Fprintf(stderr, "docker-worker: %v\n", err)
		return 1
	}
	defer closeFn()
	fmt.Fprintf(stderr, "embedded queue at %s, worker %s/%s (capacity %d).\n"+
		"Paste the export line below into another shell, then:\n"+
		"  docker-worker submit task.yml            run a task and print its log\n"+
		"  docker-worker task status TASK_ID        (also: log, artifacts, cancel, rerun)\n",
		q.rootURL, cfg.ProvisionerID, cfg.WorkerType, cfg.Capacity)
	printExports(stdout, q)
	code := runUntilSignalled(w, logger)
	stopQueue()
	<-q.done
	return code
}
