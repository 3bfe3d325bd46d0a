package main

import (
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

	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/localqueue"
)

// queueFlags are the flags shared by queue and dev.
type queueFlags struct {
	listen    *string
	rootURL   *string
	dataDir   *string
	claimWait *time.Duration
	logLevel  *string
}

func addQueueFlags(fs *flag.FlagSet) queueFlags {
	return queueFlags{
		listen:    fs.String("listen", "127.0.0.1:8080", "address the queue listens on"),
		rootURL:   fs.String("root-url", "", "rootUrl clients use (default http://<listen address>)"),
		dataDir:   fs.String("data-dir", defaultDataDir(), "where the queue keeps its client secret and artifacts"),
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

// startQueue listens and serves the embedded queue in the background. The
// returned channel yields Serve's error once ctx is done.
func startQueue(ctx context.Context, f queueFlags, logger *slog.Logger) (string, localClient, <-chan error, error) {
	client, err := loadOrCreateClient(*f.dataDir)
	if err != nil {
		return "", client, nil, err
	}
	ln, err := net.Listen("tcp", *f.listen)
	if err != nil {
		return "", client, nil, fmt.Errorf("listen: %w", err)
	}
	rootURL := *f.rootURL
	if rootURL == "" {
		rootURL = "http://" + ln.Addr().String()
	}
	q, err := localqueue.New(localqueue.Config{
		RootURL:   rootURL,
		DataDir:   filepath.Join(*f.dataDir, "artifacts"),
		Clients:   []localqueue.Client{{ClientID: client.ClientID, AccessToken: client.AccessToken, Scopes: []string{"*"}}},
		ClaimWait: *f.claimWait,
		Logger:    logger.With("component", "queue"),
	})
	if err != nil {
		ln.Close()
		return "", client, nil, err
	}
	done := make(chan error, 1)
	go func() { done <- localqueue.Serve(ctx, ln, q) }()
	return rootURL, client, done, nil
}

func printExports(w io.Writer, rootURL string, c localClient) {
	fmt.Fprintf(w, "export %s=%s %s=%s %s=%s\n", config.EnvRootURL, rootURL,
		config.EnvClientID, c.ClientID, config.EnvAccessToken, c.AccessToken)
}

func runQueue(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("queue", "queue [flags]", stderr)
	qf := addQueueFlags(fs)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	logger := newLogger(stderr, *qf.logLevel)
	rootURL, client, done, err := startQueue(ctx, qf, logger)
	if err != nil {
		fmt.Fprintf(stderr, "docker-worker: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "embedded queue at %s; use it with:\n", rootURL)
	printExports(stdout, rootURL, client)
	if err := <-done; err != nil {
		fmt.Fprintf(stderr, "docker-worker: queue: %v\n", err)
		return 1
	}
	return 0
}

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("dev", "dev [flags]", stderr)
	qf := addQueueFlags(fs)
	cfgPath := fs.String("config", "", "worker config file (optional; rootUrl and credentials come from the embedded queue)")
	capacity := fs.Int("capacity", 0, "tasks run at once (default: from --config, else 2)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	logger := newLogger(stderr, *qf.logLevel)
	qctx, stopQueue := context.WithCancel(context.Background())
	defer stopQueue()
	rootURL, client, done, err := startQueue(qctx, qf, logger)
	if err != nil {
		fmt.Fprintf(stderr, "docker-worker: %v\n", err)
		return 1
	}
	cfg := config.Default()
	cfg.Capacity = 2
	if *cfgPath != "" {
		if err := config.ReadFile(*cfgPath, cfg); err != nil {
			fmt.Fprintf(stderr, "docker-worker: bad configuration:\n%v\n", err)
			return 1
		}
	}
	if *capacity > 0 {
		cfg.Capacity = *capacity
	}
	cfg.RootURL = rootURL
	cfg.Taskcluster = config.Credentials{ClientID: client.ClientID, AccessToken: client.AccessToken}
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
	fmt.Fprintf(stderr, "embedded queue at %s, worker %s/%s (capacity %d); submit tasks with:\n",
		rootURL, cfg.ProvisionerID, cfg.WorkerType, cfg.Capacity)
	printExports(stdout, rootURL, client)
	code := runUntilSignalled(w, logger)
	stopQueue()
	<-done
	return code
}
