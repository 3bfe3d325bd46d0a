package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	chainoftrust "go.dockerworker.dev/docker-worker/features/chainOfTrust"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/localqueue/server"
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
		listen:    fs.String("listen", server.DefaultListen, "address the queue listens on"),
		rootURL:   fs.String("root-url", "", "rootUrl clients use (default http://<listen address>)"),
		dataDir:   fs.String("data-dir", server.DefaultDataDir(), "where the queue keeps its state, client secret and artifacts"),
		claimWait: fs.Duration("claim-wait", 20*time.Second, "how long claimWork waits for a task"),
		logLevel:  fs.String("log-level", "info", "log level: debug, info, warn, error"),
	}
}

// queueConfig loads the queue config file and lays the flags over it:
// flags given on the command line win over the file's listen, rootUrl and
// dataDir, which win over the flags' defaults.
func (f queueFlags) queueConfig() (*server.Config, error) {
	cfg, err := server.LoadConfig(*f.config)
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	for _, o := range []struct {
		flag string
		dst  *string
		val  string
	}{
		{"listen", &cfg.Listen, *f.listen},
		{"root-url", &cfg.RootURL, *f.rootURL},
		{"data-dir", &cfg.DataDir, *f.dataDir},
	} {
		if set[o.flag] || *o.dst == "" {
			*o.dst = o.val
		}
	}
	return cfg, nil
}

// startQueue starts the embedded queue as the flags say; withAdmin adds the
// data directory's admin client (dev always does; queue does when its
// config names no clients); uiAdmin lets the web page sign for it.
func startQueue(ctx context.Context, f queueFlags, withAdmin, uiAdmin bool, logger *slog.Logger) (*server.Queue, error) {
	cfg, err := f.queueConfig()
	if err != nil {
		return nil, err
	}
	return server.Start(ctx, *cfg, server.Options{ClaimWait: *f.claimWait, WithAdmin: withAdmin, UIAdmin: uiAdmin, Logger: logger.With("component", "queue")})
}

// printExports writes the shell line that points Taskcluster clients at
// the queue (with the admin client's credentials, when there is one).
func printExports(w io.Writer, q *server.Queue) {
	if q.Admin == nil {
		fmt.Fprintf(w, "export %s=%s\n", config.EnvRootURL, q.RootURL)
		return
	}
	fmt.Fprintf(w, "export %s=%s %s=%s %s=%s\n", config.EnvRootURL, q.RootURL,
		config.EnvClientID, q.Admin.ClientID, config.EnvAccessToken, q.Admin.AccessToken)
}

func runQueue(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("queue", "queue [flags]", stderr)
	qf := addQueueFlags(fs, "config", "queue config file: clients, storage (local or S3), Pulse (see README)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	logger := newLogger(stderr, *qf.logLevel, config.LogFormatJSON)
	q, err := startQueue(ctx, qf, false, false, logger)
	if err != nil {
		fmt.Fprintf(stderr, "docker-worker: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "embedded queue at %s (web page: %s/); use it with:\n", q.RootURL, q.RootURL)
	printExports(stdout, q)
	if err := q.Wait(); err != nil {
		fmt.Fprintf(stderr, "docker-worker: queue: %v\n", err)
		return 1
	}
	return 0
}

// devDiskspaceThreshold is the free space per task `dev` asks for unless
// its config says otherwise: 1 GB, not a fleet worker's 30 GB.
const devDiskspaceThreshold = 1_000_000_000

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("dev", "dev [flags]", stderr)
	qf := addQueueFlags(fs, "queue-config", "queue config file, as 'docker-worker queue --config' reads (optional)")
	cfgPath := fs.String("config", "", "worker config file (optional; rootUrl and credentials come from the embedded queue)")
	capacity := fs.Int("capacity", 0, "tasks run at once (default: from --config, else 2)")
	uiAdmin := fs.Bool("ui-admin", false, "let the web page at the rootUrl sign actions as the local admin client, without asking for credentials: "+
		"anyone who can open the page acts as the admin (keep the queue on loopback)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	logger := newLogger(stderr, *qf.logLevel, config.LogFormatJSON)
	qctx, stopQueue := context.WithCancel(context.Background())
	defer stopQueue()
	q, err := startQueue(qctx, qf, true, *uiAdmin, logger)
	if err != nil {
		fmt.Fprintf(stderr, "docker-worker: %v\n", err)
		return 1
	}
	// One-machine defaults, which --config may override: the live log is
	// served on loopback only, the interactive shell without TLS, and a
	// cancelled task stops within a second.
	cfg := config.Default()
	cfg.Capacity = 2
	cfg.Logging.LiveLogBindAddress = "127.0.0.1"
	// The interactive shell is served without TLS (no certificate to
	// configure), so the web page's shell reaches it over ws://.
	cfg.Interactive.SSL = false
	cfg.Task.StatusPollInterval = 1000
	cfg.CapacityManagement.DiskspaceThreshold = devDiskspaceThreshold
	if *cfgPath != "" {
		if err := config.ReadFile(*cfgPath, cfg); err != nil {
			fmt.Fprintf(stderr, "docker-worker: bad configuration:\n%v\n", err)
			return 1
		}
	}
	if *capacity > 0 {
		cfg.Capacity = *capacity
	}
	cfg.RootURL = q.RootURL
	cfg.Taskcluster = config.Credentials{ClientID: q.Admin.ClientID, AccessToken: q.Admin.AccessToken}
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
	// The worker's journal lives beside the queue's state too.
	if cfg.StateDir == config.DefaultStateDir {
		cfg.StateDir = filepath.Join(q.DataDir, "worker-state")
	}
	// The worker hears the queue's task-exception messages on the broker
	// the queue publishes them on, unless the config names another.
	if cfg.Pulse.URL == "" {
		cfg.Pulse.URL = q.PulseURL
	}
	// Chain of trust signs with a key of its own, kept beside the queue's
	// state, unless the config names one.
	if cfg.Ed25519SigningKeyLocation == config.DefaultEd25519SigningKeyLocation {
		cfg.Ed25519SigningKeyLocation = filepath.Join(q.DataDir, "cot-signing-key.key")
		if err := chainoftrust.EnsureKey(cfg.Ed25519SigningKeyLocation); err != nil {
			fmt.Fprintf(stderr, "docker-worker: chain of trust signing key: %v\n", err)
			return 1
		}
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "docker-worker: bad configuration:\n%v\n", err)
		return 1
	}
	warnIgnored(logger, cfg)
	// No WORKER_METRICS lines: dev's stdout carries the export line that
	// scripts read, and a one-machine worker feeds no fleet pipeline.
	w, closeFn, err := buildWorker(ctx, cfg, logger, nil, io.Discard)
	if err != nil {
		fmt.Fprintf(stderr, "docker-worker: %v\n", err)
		return 1
	}
	defer closeFn()
	fmt.Fprintf(stderr, "embedded queue at %s, worker %s/%s (capacity %d).\n"+
		"Paste the export line below into another shell, then:\n"+
		"  docker-worker submit task.yml            run a task and print its log\n"+
		"  docker-worker task status TASK_ID        (also: log, artifacts, cancel, rerun)\n"+
		"or open the web page at %s/\n",
		q.RootURL, cfg.ProvisionerID, cfg.WorkerType, cfg.Capacity, q.RootURL)
	printExports(stdout, q)
	code := runUntilStopped(w, logger, nil)
	stopQueue()
	_ = q.Wait() // the worker's exit code decides
	return code
}
