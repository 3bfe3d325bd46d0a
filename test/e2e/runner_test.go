package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/localqueue"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// runnerStandIn plays Taskcluster worker-runner for the real binary: it
// writes the worker's config file as the runner does (JSON, mode 0600),
// starts the worker with pipes on its stdin and stdout, and speaks the
// ~{json} line protocol. Every stdout line that is not a protocol message
// must be a JSON log record, as the runner logs them, or a WORKER_METRICS
// line.
type runnerStandIn struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *logSink

	mu       sync.Mutex
	records  []map[string]any // the worker's log records
	messages []map[string]any // the worker's protocol messages
	bad      []string         // stdout lines that are none of these
	// workerMetrics are the WORKER_METRICS lines (and the empty lines
	// before them).
	workerMetrics string
	changed       chan struct{} // pinged on every stdout line
	outDone       chan struct{}
	exitCode      int
}

// legacy is how worker-runner's docker-worker launcher (worker-runner up
// to the release that removed it) starts the worker: DOCKER_WORKER_CONFIG
// names the file, the arguments are "--host worker-runner production".
// Otherwise the worker is started as current worker-runner's
// generic-worker launcher starts its worker: "run --config FILE
// --with-worker-runner".
func startUnderRunner(t *testing.T, bin string, workerConfig map[string]any, legacy bool) *runnerStandIn {
	t.Helper()
	body, err := json.MarshalIndent(workerConfig, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "worker-config.json")
	if err := os.WriteFile(path, body, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", path, "--with-worker-runner")
	cmd.Env = append(os.Environ(), "TASKCLUSTER_ROOT_URL=", "TASKCLUSTER_CLIENT_ID=", "TASKCLUSTER_ACCESS_TOKEN=", "DOCKER_WORKER_CONFIG=")
	if legacy {
		cmd = exec.Command(bin, "--host", "worker-runner", "production")
		cmd.Env = append(os.Environ(), "TASKCLUSTER_ROOT_URL=", "TASKCLUSTER_CLIENT_ID=", "TASKCLUSTER_ACCESS_TOKEN=", "DOCKER_WORKER_CONFIG="+path)
	}
	r := &runnerStandIn{t: t, cmd: cmd, stderr: &logSink{}, changed: make(chan struct{}, 1), outDone: make(chan struct{}), exitCode: -1}
	cmd.Stderr = r.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if r.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go r.read(stdout)
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		if t.Failed() {
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Logf("worker stderr:\n%s", r.stderr.String())
			for _, rec := range r.records {
				b, _ := json.Marshal(rec)
				t.Logf("log: %s", b)
			}
		}
	})
	return r
}

func (r *runnerStandIn) read(stdout io.Reader) {
	defer close(r.outDone)
	sc := bufio.NewScanner(stdout)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var m map[string]any
		r.mu.Lock()
		switch {
		case strings.HasPrefix(line, "~{") && json.Unmarshal([]byte(line[1:]), &m) == nil:
			r.messages = append(r.messages, m)
		case strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &m) == nil:
			r.records = append(r.records, m)
		case line == "" || strings.HasPrefix(line, "WORKER_METRICS {") && json.Unmarshal([]byte(line[len("WORKER_METRICS "):]), &m) == nil:
			// docker-worker's WORKER_METRICS lines, each after an empty
			// line; worker-runner forwards them as text.
			r.workerMetrics += line + "\n"
		default:
			r.bad = append(r.bad, line)
		}
		r.mu.Unlock()
		select {
		case r.changed <- struct{}{}:
		default:
		}
	}
}

// send writes one protocol message to the worker.
func (r *runnerStandIn) send(msg map[string]any) {
	r.t.Helper()
	b, err := json.Marshal(msg)
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.stdin.Write(append(append([]byte("~"), b...), '\n')); err != nil {
		r.t.Fatalf("send %v: %v", msg["type"], err)
	}
}

// waitFor waits until cond holds for the messages and records so far.
func (r *runnerStandIn) waitFor(what string, cond func(messages, records []map[string]any) bool) {
	r.t.Helper()
	deadline := time.After(2 * time.Minute)
	for {
		r.mu.Lock()
		ok := cond(r.messages, r.records)
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.changed:
		case <-r.outDone:
			r.mu.Lock()
			ok := cond(r.messages, r.records)
			r.mu.Unlock()
			if !ok {
				r.t.Fatalf("the worker's stdout ended before %s", what)
			}
			return
		case <-deadline:
			r.t.Fatalf("no %s", what)
		}
	}
}

// welcome sends the runner's welcome with every capability current
// worker-runner has and checks the worker's hello.
func (r *runnerStandIn) welcome() {
	r.t.Helper()
	r.send(map[string]any{"type": "welcome", "capabilities": []string{"graceful-termination", "shutdown", "new-credentials", "log", "error-report"}})
	var hello map[string]any
	r.waitFor("hello", func(ms, _ []map[string]any) bool {
		for _, m := range ms {
			if m["type"] == "hello" {
				hello = m
				return true
			}
		}
		return false
	})
	var caps []string
	for _, c := range hello["capabilities"].([]any) {
		caps = append(caps, c.(string))
	}
	slices.Sort(caps)
	if want := []string{"graceful-termination", "new-credentials", "shutdown"}; !slices.Equal(caps, want) {
		r.t.Errorf("hello capabilities %v, want %v", caps, want)
	}
}

// wait waits for the worker to exit and returns its exit code; its stdout
// must have held only protocol messages and JSON records.
func (r *runnerStandIn) wait() int {
	r.t.Helper()
	r.stdin.Close()
	done := make(chan error, 1)
	go func() { <-r.outDone; done <- r.cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		switch {
		case err == nil:
			r.exitCode = 0
		case errors.As(err, &ee):
			r.exitCode = ee.ExitCode()
		default:
			r.t.Fatalf("wait: %v", err)
		}
	case <-time.After(2 * time.Minute):
		r.t.Fatal("the worker did not exit")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.bad) > 0 {
		r.t.Errorf("stdout lines that are neither protocol messages nor JSON records: %q", r.bad)
	}
	if !strings.HasPrefix(r.workerMetrics, "\nWORKER_METRICS {\"eventType\":\"instanceBoot\"") ||
		!strings.Contains(r.workerMetrics, "\nWORKER_METRICS {\"eventType\":\"instanceShutdown\"") {
		r.t.Errorf("WORKER_METRICS lines do not start with instanceBoot and include instanceShutdown:\n%s", r.workerMetrics)
	}
	return r.exitCode
}

func (r *runnerStandIn) messageTypes() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, m := range r.messages {
		out = append(out, m["type"].(string))
	}
	return out
}

func (r *runnerStandIn) recordsWithMsg(msg string) []map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []map[string]any
	for _, rec := range r.records {
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// runnerWorkerConfig is the config worker-runner writes for the worker of
// pool null-provisioner/<workerType>: the pool's workerConfig (docker-
// worker's keys, some of them without effect here) with the runner's
// identity, credentials and provider metadata set over it; legacy uses the
// docker-worker launcher's key names, else the generic-worker launcher's.
func runnerWorkerConfig(t *testing.T, q *queueEnv, cfg *config.Config, creds tc.Credentials, legacy bool) map[string]any {
	c := map[string]any{
		// the pool's workerConfig
		"capacity":                  1,
		"createQueue":               true,
		"shutdown":                  map[string]any{"enabled": true, "afterIdleSeconds": 300},
		"statelessHostname":         map[string]any{"enabled": true, "domain": "taskcluster-worker.net"},
		"task":                      map[string]any{"reclaimDivisor": 2, "dequeueCount": 15},
		"taskQueue":                 map[string]any{"pollInterval": 100, "maxBackoff": 1000},
		"logging":                   map[string]any{"liveLogBindAddress": "127.0.0.1"},
		"capacityManagement":        map[string]any{"diskspaceThreshold": 1_000_000_000},
		"stateDir":                  t.TempDir(),
		"ed25519SigningKeyLocation": testSigningKey(t),
		// set by the runner
		"provisionerId":  cfg.ProvisionerID,
		"workerType":     cfg.WorkerType,
		"workerGroup":    cfg.WorkerGroup,
		"workerId":       cfg.WorkerID,
		"workerLocation": `{"cloud":"static"}`,
		"instanceType":   "test-instance",
		"region":         "test-region",
	}
	if legacy {
		c["rootUrl"] = q.rootURL
		c["taskcluster"] = map[string]any{"clientId": creds.ClientID, "accessToken": creds.AccessToken}
		c["publicIp"], c["privateIp"], c["instanceId"], c["workerNodeType"] = "127.0.0.1", "127.0.0.1", "i-test", "test-instance"
	} else {
		c["rootURL"], c["clientId"], c["accessToken"] = q.rootURL, creds.ClientID, creds.AccessToken
		c["publicIP"], c["privateIP"], c["instanceID"] = "127.0.0.1", "127.0.0.1", "i-test"
		c["availabilityZone"] = "test-region-a"
		c["workerTypeMetadata"] = map[string]any{"public-hostname": "localhost", "instance-type": "test-instance"}
	}
	return c
}

// Under worker-runner: the worker answers the welcome, takes new
// credentials for its own calls without dropping the claim it holds, stops
// on graceful-termination (letting a running task finish, or aborting it
// worker-shutdown), then asks the runner to shut the host down and exits
// 0. A pool config written for docker-worker (keys without effect here
// included) runs, with one warning naming those keys.
func TestUnderWorkerRunner(t *testing.T) {
	bin := workerBinary(t)
	const newClient, newToken = "worker-runner-renewed", "renewed-secret"
	q := startQueue(t, func(c *localqueue.Config) {
		c.Clients = append(c.Clients, localqueue.Client{ClientID: newClient, AccessToken: newToken, Scopes: []string{"*"}})
	})
	admin := tc.Credentials{ClientID: adminID, AccessToken: adminToken}

	for _, legacy := range []bool{true, false} {
		name := "generic-worker launcher"
		if legacy {
			name = "docker-worker launcher"
		}
		t.Run(name+", new credentials, finish tasks", func(t *testing.T) {
			dockertestRequire(t)
			cfg := q.workerConfig("runner-finish")
			r := startUnderRunner(t, bin, runnerWorkerConfig(t, q, cfg, admin, legacy), legacy)
			r.welcome()
			warned := r.recordsWithMsg("config keys accepted without effect")
			if len(warned) != 1 {
				t.Fatalf("%d warnings about keys without effect, want 1", len(warned))
			}
			keys, _ := json.Marshal(warned[0]["keys"])
			for _, k := range []string{"createQueue", "statelessHostname", "task.dequeueCount"} {
				if !strings.Contains(string(keys), `"`+k+`"`) {
					t.Errorf("the warning does not name %s: %s", k, keys)
				}
			}
			// shutdown.* configures idle shutdown: not a key without effect.
			if strings.Contains(string(keys), `"shutdown`) {
				t.Errorf("the warning names shutdown, which takes effect: %s", keys)
			}

			// New credentials arrive while a task runs: its claim is kept,
			// and the next task is claimed with them.
			id1 := q.create(t, newTask(cfg, shell("echo Hello; sleep 5; echo Done", 120)))
			q.waitLiveLine(t, id1, "Hello\r\n")
			r.send(map[string]any{"type": "new-credentials", "client-id": newClient, "access-token": newToken})
			r.waitFor("the new credentials' record", func(_, recs []map[string]any) bool {
				return slices.ContainsFunc(recs, func(m map[string]any) bool { return m["msg"] == "worker-runner sent new credentials" })
			})
			wantState(t, q.waitRun(t, id1, 0, 2*time.Minute), 0, tc.StateCompleted, "")
			mustContain(t, q.logOf(t, id1, 0, ""), "Hello", "Done")
			id2 := q.create(t, newTask(cfg, shell("echo two", 60)))
			wantState(t, q.waitRun(t, id2, 0, 2*time.Minute), 0, tc.StateCompleted, "")

			// graceful-termination with finish-tasks: the running task
			// finishes, nothing more is claimed, the runner is asked to
			// shut the host down.
			id3 := q.create(t, newTask(cfg, shell("echo Hello; sleep 5; echo Done", 120)))
			q.waitLiveLine(t, id3, "Hello\r\n")
			r.send(map[string]any{"type": "graceful-termination", "finish-tasks": true})
			const stopping = "worker-runner: graceful termination, finishing running tasks, claiming no more"
			r.waitFor("the graceful stop's record", func(_, recs []map[string]any) bool {
				return slices.ContainsFunc(recs, func(m map[string]any) bool { return m["msg"] == stopping })
			})
			id4 := q.create(t, newTask(cfg, shell("echo never", 60)))
			r.waitFor("shutdown message", func(ms, _ []map[string]any) bool {
				return slices.ContainsFunc(ms, func(m map[string]any) bool { return m["type"] == "shutdown" })
			})
			if code := r.wait(); code != 0 {
				t.Errorf("exit code %d, want 0", code)
			}
			wantState(t, q.waitRun(t, id3, 0, time.Minute), 0, tc.StateCompleted, "")
			mustContain(t, q.logOf(t, id3, 0, ""), "Hello", "Done")
			if s, err := q.admin.Status(t.Context(), id4); err != nil || s.Status.State != tc.StatePending {
				t.Errorf("a task created after graceful-termination: %+v, %v; want pending", s, err)
			}
			if got := r.messageTypes(); !slices.Equal(got, []string{"hello", "shutdown"}) {
				t.Errorf("messages %v, want hello then shutdown", got)
			}
		})
	}

	t.Run("finish-tasks false aborts running tasks", func(t *testing.T) {
		dockertestRequire(t)
		cfg := q.workerConfig("runner-abort")
		r := startUnderRunner(t, bin, runnerWorkerConfig(t, q, cfg, admin, false), false)
		r.welcome()
		id := q.create(t, newTask(cfg, shell("echo Hello; sleep 60; echo Done", 120)))
		q.waitLiveLine(t, id, "Hello\r\n")
		r.send(map[string]any{"type": "graceful-termination", "finish-tasks": false})
		if code := r.wait(); code != 0 {
			t.Errorf("exit code %d, want 0", code)
		}
		s := q.waitRun(t, id, 0, time.Minute)
		wantState(t, s, 0, tc.StateException, "worker-shutdown")
		log := q.logOf(t, id, 0, "public/logs/live_backing.log")
		mustContain(t, log, "Hello", "[taskcluster:error] Task has been aborted prematurely. Reason: worker-shutdown")
		if strings.Contains(log, "Done") {
			t.Error("the task ran to the end")
		}
		if got := r.messageTypes(); !slices.Equal(got, []string{"hello", "shutdown"}) {
			t.Errorf("messages %v, want hello then shutdown", got)
		}
	})

	// The swap reaches claimWork: after new credentials the queue refuses,
	// the worker stops with run's exit code for rejected credentials,
	// having claimed and run a task with the ones it started with.
	t.Run("rejected new credentials", func(t *testing.T) {
		dockertestRequire(t)
		cfg := q.workerConfig("runner-rejected")
		r := startUnderRunner(t, bin, runnerWorkerConfig(t, q, cfg, admin, false), false)
		r.welcome()
		id := q.create(t, newTask(cfg, shell("echo one", 60)))
		wantState(t, q.waitRun(t, id, 0, 2*time.Minute), 0, tc.StateCompleted, "")
		r.send(map[string]any{"type": "new-credentials", "client-id": newClient, "access-token": "not-the-token"})
		if code := r.wait(); code != 3 {
			t.Errorf("exit code %d, want 3 (credentials rejected)", code)
		}
		if got := r.messageTypes(); !slices.Equal(got, []string{"hello"}) {
			t.Errorf("messages %v, want only hello (a worker that cannot claim does not ask for the host's shutdown)", got)
		}
	})
}
