package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
	"go.dockerworker.dev/docker-worker/worker/localqueue"
	"go.dockerworker.dev/docker-worker/worker/pulse/pulsetest"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// secrets_test: the worker's access token, a run's temporary credentials,
// a registry password, the Pulse and InfluxDB passwords never appear in the worker
// log (at debug level), the task log or any artifact of the run.

// runCredentials is an always-on feature that keeps the temporary
// credentials of every run, so that the test knows what must not leak.
type runCredentials struct {
	mu    sync.Mutex
	creds []features.Credentials
}

func (c *runCredentials) Name() string   { return "e2eRunCredentials" }
func (c *runCredentials) AlwaysOn() bool { return true }

func (c *runCredentials) NewTask(t features.Task) (features.TaskFeature, error) {
	c.mu.Lock()
	c.creds = append(c.creds, t.Credentials())
	c.mu.Unlock()
	return nil, nil
}

func (c *runCredentials) all() []features.Credentials {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]features.Credentials(nil), c.creds...)
}

// certificateSecrets are the secret parts of a temporary credentials
// certificate: its seed and signature.
func certificateSecrets(t *testing.T, cert string) []string {
	t.Helper()
	var c struct{ Seed, Signature string }
	if err := json.Unmarshal([]byte(cert), &c); err != nil {
		t.Fatalf("certificate %q: %v", cert, err)
	}
	if c.Seed == "" || c.Signature == "" {
		t.Fatalf("certificate without seed or signature: %q", cert)
	}
	return []string{c.Seed, c.Signature}
}

func TestSecretsStayOutOfLogsAndArtifacts(t *testing.T) {
	pushPrivateImage(t)
	dc := dockertest.Require(t)
	broker := pulsetest.Require(t)
	if err := dc.RemoveImage(t.Context(), privateE2EImage); err != nil {
		t.Fatal(err)
	}
	const (
		workerClient = "e2e-secret-worker"
		workerToken  = "e2e-worker-token-a8d3f1c9e2b7"
		pulseSecret  = "e2e-pulse-password-5f2c8e1d"
		influxSecret = "e2e-influx-password-3e7a9c2f"
	)
	q := startQueue(t, func(c *localqueue.Config) {
		c.Clients = append(c.Clients, localqueue.Client{ClientID: workerClient, AccessToken: workerToken, Scopes: []string{"*"}})
	})
	cfg := q.workerConfig("secrets")
	cfg.Taskcluster.ClientID, cfg.Taskcluster.AccessToken = workerClient, workerToken
	cfg.Registries = map[string]config.RegistryCredentials{
		dockertest.PrivateRegistry: {Username: dockertest.PrivateUser, Password: dockertest.PrivatePassword},
	}
	// The broker refuses this password: the worker logs the failed
	// connections (and falls back to status polling).
	bu, err := url.Parse(broker)
	if err != nil {
		t.Fatal(err)
	}
	bu.User = url.UserPassword(bu.User.Username(), pulseSecret)
	cfg.Pulse.URL = bu.String()
	cfg.Status.Listen = "127.0.0.1:0"
	// InfluxDB (without authentication) takes the points whatever the
	// password; the worker holds it all the same.
	influx := sharedInflux(t)
	cfg.Influx.URL, cfg.Influx.Database = influx, influxDatabase(t, influx)
	cfg.Influx.Username, cfg.Influx.Password = "e2e", influxSecret
	creds := &runCredentials{}
	logs := newTaskLogs()
	we := startWorkerWith(t, q, cfg, []features.Feature{creds, logs})
	we.waitLog(t, "pulse: no connection to the broker; cancellations are noticed by status polling until it is back", 1, time.Minute)

	p := shell("echo secret-check; env | sort; mkdir -p /out; echo artifact-body > /out/a.txt; exit 3", 60)
	p["image"] = privateE2EImage
	p["artifacts"] = map[string]any{"public/out": map[string]any{"type": "directory", "path": "/out"}}
	p["features"] = map[string]bool{"chainOfTrust": true}
	def := newTask(cfg, p)
	def["scopes"] = []string{"docker-worker:image:" + privateE2EImage}
	ok := q.create(t, def)
	wantState(t, q.waitRun(t, ok, 0, 2*time.Minute), 0, tc.StateFailed, "")
	// A malformed payload's run: the error paths log too.
	bad := q.create(t, newTask(cfg, map[string]any{"image": image, "command": []string{"true"}, "maxRunTime": "soon"}))
	wantState(t, q.waitRun(t, bad, 0, 2*time.Minute), 0, tc.StateException, "malformed-payload")
	// Both runs are resolved; the worker's last records are written.
	we.waitLog(t, "task timings", 2, time.Minute)

	secrets := map[string]string{
		"the worker's access token": workerToken,
		"the registry password":     dockertest.PrivatePassword,
		"the Pulse password":        pulseSecret,
		"the InfluxDB password":     influxSecret,
	}
	got := creds.all()
	if len(got) < 2 {
		t.Fatalf("credentials of %d runs captured, want 2", len(got))
	}
	for _, c := range got {
		if c.AccessToken == "" || c.AccessToken == workerToken || c.Certificate == "" {
			t.Fatalf("run credentials %+v are not temporary credentials", c)
		}
		secrets["the temporary access token of "+c.ClientID] = c.AccessToken
		for i, s := range certificateSecrets(t, c.Certificate) {
			secrets[fmt.Sprintf("certificate secret %d of %s", i, c.ClientID)] = s
		}
	}

	addr := we.statusAddr(t)
	texts := map[string]string{
		"worker log":              we.logs.String(),
		"status summary":          httpGet(t, "http://"+addr+"/"),
		"status endpoint metrics": httpGet(t, "http://"+addr+"/metrics"),
	}
	if !strings.Contains(texts["worker log"], `"level":"DEBUG"`) {
		t.Fatal("the worker log has no debug records: the check would miss them")
	}
	if !strings.Contains(texts["worker log"], `"component":"pulse"`) {
		t.Error("no Pulse record in the worker log: the Pulse password was never near it")
	}
	for _, id := range []string{ok, bad} {
		texts["task log of "+id] = logs.text(id, 0)
		for name, a := range q.artifacts(t, id, 0) {
			if a.StorageType == "error" || a.StorageType == "reference" {
				continue
			}
			var buf bytes.Buffer
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			_, err := q.admin.Download(ctx, q.admin.ArtifactURL(id, 0, name), &buf)
			cancel()
			if err != nil {
				t.Fatalf("download %s of %s: %v", name, id, err)
			}
			texts["artifact "+name+" of "+id] = buf.String()
		}
	}
	mustContain(t, texts["task log of "+ok], "secret-check", "PATH=")
	if _, ok := texts["artifact public/out/a.txt of "+ok]; !ok {
		t.Errorf("the directory artifact was not uploaded; checked: %v", keys(texts))
	}
	if _, ok := texts["artifact public/chain-of-trust.json of "+ok]; !ok {
		t.Errorf("no chain of trust document; checked: %v", keys(texts))
	}
	for where, text := range texts {
		for what, secret := range secrets {
			if strings.Contains(text, secret) {
				t.Errorf("%s appears in the %s", what, where)
			}
		}
	}
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// The binary at --log-level debug: its stdout holds none of the secrets
// either, and its records carry docker-worker's event names as type.
func TestSecretsStayOutOfTheBinaryDebugLog(t *testing.T) {
	pushPrivateImage(t)
	dc := dockertest.Require(t)
	broker := pulsetest.Require(t)
	if err := dc.RemoveImage(t.Context(), privateE2EImage); err != nil {
		t.Fatal(err)
	}
	const (
		workerClient = "e2e-secret-binary"
		workerToken  = "e2e-binary-token-7c1e9a4b2d60"
		pulseSecret  = "e2e-binary-pulse-9b4e2a7c"
	)
	q := startQueue(t, func(c *localqueue.Config) {
		c.Clients = append(c.Clients, localqueue.Client{ClientID: workerClient, AccessToken: workerToken, Scopes: []string{"*"}})
	})
	cfg := q.workerConfig("secrets-binary")
	cfg.Taskcluster.ClientID, cfg.Taskcluster.AccessToken = workerClient, workerToken
	conf := writeConfig(t, cfg)
	bu, err := url.Parse(broker)
	if err != nil {
		t.Fatal(err)
	}
	bu.User = url.UserPassword(bu.User.Username(), pulseSecret)
	appendFile(t, conf, fmt.Sprintf("registries:\n  %q: {username: %s, password: %s}\npulse: {url: %q}\n",
		dockertest.PrivateRegistry, dockertest.PrivateUser, dockertest.PrivatePassword, bu.String()))

	bin := workerBinary(t)
	out := &logSink{}
	cmd := exec.Command(bin, "run", "--log-level", "debug", "--config", conf)
	cmd.Env = append(os.Environ(), "TASKCLUSTER_ROOT_URL=", "TASKCLUSTER_CLIENT_ID=", "TASKCLUSTER_ACCESS_TOKEN=")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		if t.Failed() {
			t.Logf("worker output:\n%s", out.String())
		}
	})

	p := shell("echo binary-secret-check; mkdir -p /out; echo body > /out/a.txt", 60)
	p["image"] = privateE2EImage
	p["artifacts"] = map[string]any{"public/out": map[string]any{"type": "directory", "path": "/out"}}
	def := newTask(cfg, p)
	def["scopes"] = []string{"docker-worker:image:" + privateE2EImage}
	id := q.create(t, def)
	wantState(t, q.waitRun(t, id, 0, 2*time.Minute), 0, tc.StateCompleted, "")
	for start := time.Now(); out.count("task timings") == 0 || !strings.Contains(out.String(), "pulse: no connection"); time.Sleep(100 * time.Millisecond) {
		if time.Since(start) > time.Minute {
			t.Fatal("no task timings or Pulse connection record from the worker")
		}
	}
	// SIGINT: the worker stops (its exit records are checked too).
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("worker exit: %v", err)
	}

	log := out.String()
	if !strings.Contains(log, `"level":"DEBUG"`) {
		t.Fatal("no debug records: --log-level debug not in effect")
	}
	claimed := out.records("claimed task")
	if len(claimed) != 1 || claimed[0]["type"] != "claimed task" {
		t.Errorf(`"claimed task" records %v, want one with type "claimed task"`, claimed)
	}
	texts := map[string]string{"worker output": log, "task log": q.logOf(t, id, 0, "")}
	for name, a := range q.artifacts(t, id, 0) {
		if a.StorageType == "error" || a.StorageType == "reference" {
			continue
		}
		var buf bytes.Buffer
		if _, err := q.admin.Download(t.Context(), q.admin.ArtifactURL(id, 0, name), &buf); err != nil {
			t.Fatalf("download %s: %v", name, err)
		}
		texts["artifact "+name] = buf.String()
	}
	mustContain(t, texts["task log"], "binary-secret-check")
	for where, text := range texts {
		for what, secret := range map[string]string{
			"the worker's access token": workerToken,
			"the registry password":     dockertest.PrivatePassword,
			"the Pulse password":        pulseSecret,
		} {
			if strings.Contains(text, secret) {
				t.Errorf("%s appears in the %s", what, where)
			}
		}
	}
}
