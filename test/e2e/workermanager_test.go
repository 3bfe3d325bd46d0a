package e2e

// workermanager_test: a worker whose config file names only its provider
// (no credentials, no identity) registers with the embedded
// worker-manager, takes its pool's workerConfig, claims and runs tasks,
// renews its short-lived credentials without dropping a running task,
// stops when shouldWorkerTerminate says so and calls removeWorker as it
// shuts down. The static provider runs the real binary; the aws provider
// runs in process, its identity read from a token-protected metadata
// server whose signing key the embedded worker-manager trusts.

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
	"go.dockerworker.dev/docker-worker/worker/localqueue"
	"go.dockerworker.dev/docker-worker/worker/shutdown"
	"go.dockerworker.dev/docker-worker/worker/spot/spottest"
	"go.dockerworker.dev/docker-worker/worker/tc"
	"go.dockerworker.dev/docker-worker/worker/wiring"
)

const wmStaticSecret = "ZTJlLXN0YXRpYy1zZWNyZXQtb2YtdGhlLWUyZS10ZXN0"

// startManagedQueue is startQueue with the worker-manager settings and
// what a deployment's worker-pool role grants beside the registration's
// scopes; it also returns the queue, for its worker-manager state.
func startManagedQueue(t *testing.T, wm localqueue.WorkerManagerConfig, pool string) (*queueEnv, *localqueue.Queue) {
	t.Helper()
	q := startQueue(t, func(c *localqueue.Config) {
		c.Roles = []localqueue.Role{{RoleID: "worker-pool:" + pool, Scopes: []string{"purge-cache:purge-requests:" + pool, "auth:expand-scopes"}}}
		c.WorkerManager = wm
	})
	return q, q.queue
}

// poolWorkerConfig is the worker pool's workerConfig: what a test worker
// needs beyond its provider section.
func poolWorkerConfig() map[string]any {
	return map[string]any{
		"capacity":           1,
		"workerNodeType":     "pool-node",
		"publicIp":           "127.0.0.1",
		"taskQueue":          map[string]any{"pollInterval": 100, "maxBackoff": 1000},
		"logging":            map[string]any{"liveLogBindAddress": "127.0.0.1"},
		"capacityManagement": map[string]any{"diskspaceThreshold": 1000000000},
		"features":           map[string]any{"localLiveLog": map[string]any{"enabled": false}},
	}
}

func createPool(t *testing.T, q *queueEnv, pool, provider string) {
	t.Helper()
	err := q.admin.Request(t.Context(), "worker-manager", "PUT", "/worker-pool/"+tc.PathEscape(pool), nil, map[string]any{
		"providerId": provider, "description": "e2e", "owner": "e2e@localhost", "emailOnError": false,
		"config": map[string]any{"workerConfig": poolWorkerConfig()},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
}

// poolTask is a task for the pool's queue.
func poolTask(pool string, payload map[string]any) task {
	prov, wt, _ := strings.Cut(pool, "/")
	return newTask(&config.Config{ProvisionerID: prov, WorkerType: wt}, payload)
}

func TestWorkerManagerStaticBinary(t *testing.T) {
	dockertestRequire(t)
	const pool, group, id = "e2e-wm/static", "e2e-dc", "static-1"
	// Credentials last 6 s: renewed at 4 s, and again every few seconds.
	q, lq := startManagedQueue(t, localqueue.WorkerManagerConfig{CredentialLifetime: 6 * time.Second}, pool)
	createPool(t, q, pool, "static")
	err := q.admin.Request(t.Context(), "worker-manager", "PUT", "/workers/"+tc.PathEscape(pool)+"/"+group+"/"+id, nil, map[string]any{
		"expires": time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "providerInfo": map[string]string{"staticSecret": wmStaticSecret},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "worker.yml")
	// The provider section as worker-runner's static provider has it.
	body := "provider:\n  providerType: static\n  rootURL: " + q.rootURL + "\n  workerPoolID: " + pool + "\n  workerGroup: " + group + "\n  workerID: " + id +
		"\n  staticSecret: " + wmStaticSecret + "\n" +
		"stateDir: " + t.TempDir() + "\ned25519SigningKeyLocation: " + testSigningKey(t) + "\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	// A task that outlasts two renewals, queued before the worker starts.
	long := q.create(t, poolTask(pool, shell("sleep 10; echo long-done", 120)))

	out := &logSink{}
	cmd := exec.Command(workerBinary(t), "run", "--config", path)
	cmd.Env = append(os.Environ(), "TASKCLUSTER_ROOT_URL=", "TASKCLUSTER_CLIENT_ID=", "TASKCLUSTER_ACCESS_TOKEN=", "TASKCLUSTER_CERTIFICATE=")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("worker output:\n%s", out.String())
		}
	})

	wantState(t, q.waitRun(t, long, 0, 2*time.Minute), 0, tc.StateCompleted, "")
	mustContain(t, q.logOf(t, long, 0, "public/logs/live_backing.log"), "long-done")
	if n := len(out.records("credentials renewed")); n < 2 {
		t.Fatalf("%d credential renewals during a 10 s task with 6 s credentials, want at least 2", n)
	}
	reg := out.records("registered with worker-manager")
	if len(reg) != 1 || reg[0]["workerId"] != id || reg[0]["workerPoolId"] != pool {
		t.Fatalf("registration records %v", reg)
	}
	// The first credentials have long expired: a new claim works only
	// with the renewed ones.
	second := q.create(t, poolTask(pool, shell("echo second-done", 60)))
	wantState(t, q.waitRun(t, second, 0, time.Minute), 0, tc.StateCompleted, "")

	// worker-manager wants the worker gone: it asks between claims (at
	// most once a minute), stops and removes itself, and exits 4.
	if !lq.RequestTermination(pool, group, id, "e2e: pool retired") {
		t.Fatal("the worker is unknown to worker-manager")
	}
	var exitErr error
	select {
	case exitErr = <-done:
		done <- exitErr
	case <-time.After(3 * time.Minute):
		t.Fatal("the worker still runs 3 minutes after worker-manager asked it to terminate")
	}
	var exit *exec.ExitError
	if !errors.As(exitErr, &exit) || exit.ExitCode() != 4 {
		t.Fatalf("the worker exited with %v, want exit status 4", exitErr)
	}
	if sd := out.records("shutdown"); len(sd) != 1 || sd[0]["reason"] != string(wiring.WorkerManagerTermination) {
		t.Errorf("shutdown records %v, want one with reason %s", sd, wiring.WorkerManagerTermination)
	}
	if st := lq.Worker(pool, group, id); !st.Removed {
		t.Errorf("worker state %+v: removeWorker was not called", st)
	}
	if len(out.records("worker removed from worker-manager")) != 1 {
		t.Errorf("no removal record")
	}
}

func TestWorkerManagerAWS(t *testing.T) {
	dc := dockertest.Require(t)
	const pool = "e2e-wm/aws"
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	q, lq := startManagedQueue(t, localqueue.WorkerManagerConfig{AWSIdentityKey: &key.PublicKey}, pool)
	createPool(t, q, pool, "aws")
	md := spottest.Start(t)
	doc := `{"instanceId":"i-0e2e0000000000001","region":"us-east-1","availabilityZone":"us-east-1c","instanceType":"m5.large","privateIp":"10.1.2.3"}`
	if err := md.SetIdentity(doc, key); err != nil {
		t.Fatal(err)
	}
	md.SetUserData(`{"workerPoolId":"` + pool + `","providerId":"aws","workerGroup":"us-east-1","rootUrl":"` + q.rootURL + `"}`)
	md.Set("local-ipv4", "10.1.2.3")
	md.Set("public-ipv4", "127.0.0.1")

	path := filepath.Join(t.TempDir(), "worker.yml")
	body := "provider: {providerType: aws, metadataEndpoint: " + md.URL + "}\n" +
		"stateDir: " + t.TempDir() + "\ned25519SigningKeyLocation: " + testSigningKey(t) + "\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &logSink{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	noEnv := func(string) string { return "" }
	cfg, reg, err := wiring.LoadConfig(t.Context(), path, config.LoadOptions{Getenv: noEnv, FeatureNames: wiring.FeatureNames()}, logger)
	if err != nil {
		t.Fatal(err)
	}
	if reg == nil {
		t.Fatal("no registration")
	}
	if cfg.WorkerID != "i-0e2e0000000000001" || cfg.WorkerGroup != "us-east-1" || cfg.ProvisionerID != "e2e-wm" || cfg.WorkerType != "aws" ||
		cfg.InstanceType != "m5.large" || cfg.WorkerNodeType != "m5.large" || cfg.PrivateIP != "10.1.2.3" || cfg.RootURL != q.rootURL ||
		cfg.Capacity != 1 || cfg.TaskQueue.PollInterval != 100 {
		t.Fatalf("config after registration: %+v", cfg)
	}
	if loc, _ := cfg.WorkerLocationJSON(); !strings.Contains(loc, `"cloud":"aws"`) || !strings.Contains(loc, `"availabilityZone":"us-east-1c"`) {
		t.Errorf("workerLocation %s", loc)
	}
	if md.Refused() != 0 {
		t.Errorf("%d metadata reads without an IMDSv2 token", md.Refused())
	}
	if cfg.Shutdown.MetadataEndpoint != md.URL {
		t.Errorf("shutdown.metadataEndpoint %q, want the provider's %q", cfg.Shutdown.MetadataEndpoint, md.URL)
	}
	reg.CheckInterval = time.Second
	w, err := wiring.Build(t.Context(), cfg, wiring.Options{
		Logger: logger, Version: "e2e", Hostname: "e2e-host", TempDir: t.TempDir(), Docker: dc, Registration: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	we := &workerEnv{w: w.Worker, cfg: cfg, logs: logs, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	we.stop = cancel
	go func() { we.done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-we.done:
		case <-time.After(2 * time.Minute):
			t.Error("worker did not stop")
		}
		w.Close()
		if t.Failed() {
			t.Logf("worker log:\n%s", logs.String())
		}
	})

	// A task runs; while it runs worker-manager asks the worker to go: the
	// task finishes, nothing more is claimed, the worker removes itself.
	id := q.create(t, poolTask(pool, shell("sleep 4; echo aws-done", 60)))
	we.waitLog(t, "claimed task", 1, time.Minute)
	lq.RequestTermination(pool, "us-east-1", "i-0e2e0000000000001", "e2e: scale down")
	later := q.create(t, poolTask(pool, shell("echo never", 60)))
	err = we.waitExit(t, 2*time.Minute)
	if !errors.Is(err, shutdown.ErrShutDown) {
		t.Fatalf("Run returned %v, want the worker's own shutdown", err)
	}
	wantState(t, q.waitRun(t, id, 0, time.Minute), 0, tc.StateCompleted, "")
	mustContain(t, q.logOf(t, id, 0, "public/logs/live_backing.log"), "aws-done")
	if st, err := q.admin.Status(t.Context(), later); err != nil || st.Status.State != tc.StatePending {
		t.Errorf("the task queued after the termination request: %+v, %v; want it still pending", st, err)
	}
	if st := lq.Worker(pool, "us-east-1", "i-0e2e0000000000001"); !st.Removed {
		t.Errorf("worker state %+v: removeWorker was not called", st)
	}
}
