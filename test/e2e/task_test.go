package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// env_test: payload env is visible, reserved variables are set and win.
func TestEnv(t *testing.T) {
	q := startQueue(t, nil)
	cfg := q.workerConfig("env")
	cfg.WorkerLocation = map[string]any{"cloud": "local"}
	startWorker(t, q, cfg)
	p := shell("env | sort", 60)
	p["env"] = map[string]string{"WOOTBAR": "wootbar", "TASK_ID": "payload-cannot-override"}
	id := q.create(t, newTask(cfg, p))
	s := q.waitRun(t, id, 0, 2*time.Minute)
	wantState(t, s, 0, tc.StateCompleted, "completed")
	log := q.logOf(t, id, 0, "")
	mustContain(t, log,
		"WOOTBAR=wootbar",
		"TASK_ID="+id,
		"RUN_ID=0",
		"TASKCLUSTER_WORKER_TYPE=env",
		"TASKCLUSTER_WORKER_POOL=null-provisioner/env",
		"TASKCLUSTER_WORKER_GROUP=random-local-worker",
		"TASKCLUSTER_INSTANCE_TYPE=test-worker",
		"TASKCLUSTER_PUBLIC_IP=127.0.0.1",
		"TASKCLUSTER_ROOT_URL="+q.rootURL,
		`TASKCLUSTER_WORKER_LOCATION={"cloud":"local"}`,
	)
	if strings.Contains(log, "payload-cannot-override") {
		t.Error("payload env overrode TASK_ID")
	}
}

// header_footer_logs_test: header lines in order, footer with exit code.
func TestHeaderFooter(t *testing.T) {
	q := startQueue(t, nil)
	cfg := q.workerConfig("headfoot")
	startWorker(t, q, cfg)
	id := q.create(t, newTask(cfg, shell("echo output; exit 5", 60)))
	s := q.waitRun(t, id, 0, 2*time.Minute)
	wantState(t, s, 0, tc.StateFailed, "failed")
	log := q.logOf(t, id, 0, "")
	var tcLines []string
	for _, l := range strings.Split(log, "\n") {
		if strings.HasPrefix(l, "[taskcluster ") {
			tcLines = append(tcLines, l)
		}
	}
	wantPrefixes := []string{"Task ID: " + id, "Worker ID: " + cfg.WorkerID, "Worker Group: random-local-worker",
		"Worker Node Type: test-worker", "Worker Pool: null-provisioner/headfoot", "Worker Version: e2e", "Public IP: 127.0.0.1", "Hostname: e2e-host"}
	if len(tcLines) < len(wantPrefixes)+1 {
		t.Fatalf("too few [taskcluster] lines:\n%s", log)
	}
	for i, want := range wantPrefixes {
		if _, msg, _ := strings.Cut(tcLines[i], "] "); msg != want {
			t.Errorf("header line %d = %q, want %q", i, tcLines[i], want)
		}
	}
	last := tcLines[len(tcLines)-1]
	if !strings.Contains(last, "Unsuccessful task run with exit code: 5 completed in") {
		t.Errorf("last line %q", last)
	}
	mustContain(t, log, "=== Task Starting ===", "output\r\n", "=== Task Finished ===")
	arts := q.artifacts(t, id, 0)
	if a := arts["public/logs/live_backing.log"]; a.StorageType != "s3" || a.ContentType != "text/plain; charset=utf-8" {
		t.Errorf("backing log artifact %+v", a)
	}
	if a := arts["public/logs/live.log"]; a.StorageType != "link" {
		t.Errorf("live log artifact %+v", a)
	}
}

// invalid_payload_schema_test: all four cases end malformed-payload with
// every error in the log.
func TestInvalidPayload(t *testing.T) {
	q := startQueue(t, nil)
	cfg := q.workerConfig("invalid")
	startWorker(t, q, cfg)
	far := time.Now().Add(2 * 365 * 24 * time.Hour).UTC().Format(time.RFC3339)
	for _, c := range []struct {
		name    string
		payload map[string]any
		wants   []string
	}{
		{"invalid maxRunTime", map[string]any{"image": image, "command": []string{"true"}, "maxRunTime": "hello"},
			[]string{"format is invalid json schema errors", "payload.maxRunTime: must be integer"}},
		{"invalid artifact expiration", map[string]any{"image": image, "command": []string{"true"}, "maxRunTime": 60,
			"artifacts": map[string]any{"public/x": map[string]any{"type": "file", "path": "/x", "expires": far}}},
			[]string{"must not be greater than task expiration"}},
		{"retry status not a number", map[string]any{"image": image, "command": []string{"true"}, "maxRunTime": 60,
			"onExitStatus": map[string]any{"retry": []string{"1"}}},
			[]string{"payload.onExitStatus.retry[0]: must be integer"}},
		{"multiple errors", map[string]any{"image": image, "command": []string{"true"}, "maxRunTime": "hello",
			"artifacts": map[string]any{"public/x": map[string]any{"type": "file", "path": "/x", "expires": far}}},
			[]string{"format is invalid json schema errors", "payload.maxRunTime: must be integer"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := q.create(t, newTask(cfg, c.payload))
			s := q.waitRun(t, id, 0, time.Minute)
			wantState(t, s, 0, tc.StateException, "malformed-payload")
			mustContain(t, q.logOf(t, id, 0, ""), c.wants...)
		})
	}
}

// A feature the payload asks for but the worker has disabled, and a
// device the host does not have, are malformed-payload naming each, with
// a log.
func TestRequestedFeatureMissing(t *testing.T) {
	q := startQueue(t, nil)
	cfg := q.workerConfig("features")
	off := false
	cfg.Features["bulkLog"] = config.FeatureConfig{Enabled: &off}
	cfg.DeviceManagement.Root = t.TempDir() // a host without devices
	startWorker(t, q, cfg)
	p := shell("true", 60)
	p["features"] = map[string]bool{"bulkLog": true}
	p["capabilities"] = map[string]any{"devices": map[string]bool{"loopbackAudio": true}}
	id := q.create(t, newTask(cfg, p))
	s := q.waitRun(t, id, 0, time.Minute)
	wantState(t, s, 0, tc.StateException, "malformed-payload")
	mustContain(t, q.logOf(t, id, 0, ""), `feature "bulkLog" is not enabled on this worker`, `device "loopbackAudio" is not supported by this worker`)
}

// maxruntime_test: killed at the limit, failed, later output absent.
func TestMaxRunTime(t *testing.T) {
	q := startQueue(t, nil)
	cfg := q.workerConfig("maxrun")
	startWorker(t, q, cfg)
	id := q.create(t, newTask(cfg, shell("echo Hello; sleep 30; echo done", 3)))
	s := q.waitRun(t, id, 0, 2*time.Minute)
	wantState(t, s, 0, tc.StateFailed, "failed")
	log := q.logOf(t, id, 0, "")
	mustContain(t, log, "Hello", "[taskcluster:error] Task timeout after 3 seconds. Force killing container.",
		"Unsuccessful task run with exit code: -1")
	if strings.Contains(log, "done") {
		t.Error("output after the kill reached the log")
	}
}

// container_startup_test: a command that cannot start fails the task.
func TestInvalidCommand(t *testing.T) {
	q := startQueue(t, nil)
	cfg := q.workerConfig("startup")
	startWorker(t, q, cfg)
	id := q.create(t, newTask(cfg, map[string]any{"image": image, "command": []string{"/usr/bin/no-such-command"}, "maxRunTime": 60}))
	s := q.waitRun(t, id, 0, time.Minute)
	wantState(t, s, 0, tc.StateFailed, "failed")
	mustContain(t, q.logOf(t, id, 0, ""), "Failure to properly start execution environment.")
}

// retry_intermittent_task_test: an exit status listed in onExitStatus.retry
// is intermittent-task and the queue retries; failure and success are not retried.
func TestRetryIntermittent(t *testing.T) {
	q := startQueue(t, nil)
	cfg := q.workerConfig("retry")
	startWorker(t, q, cfg)
	for _, c := range []struct {
		name  string
		exit  int
		state string
		runs  int
	}{
		{"retry task with specified exit status", 36, tc.StateException, 2},
		{"failed task is not retried", 1, tc.StateFailed, 1},
		{"successful task is not retried", 0, tc.StateCompleted, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := shell(fmt.Sprintf("exit %d", c.exit), 60)
			p["onExitStatus"] = map[string]any{"retry": []int{36}}
			def := newTask(cfg, p)
			def["retries"] = 1
			id := q.create(t, def)
			s := q.waitRun(t, id, 0, time.Minute)
			wantState(t, s, 0, c.state, "")
			if c.runs == 2 {
				wantState(t, s, 0, tc.StateException, "intermittent-task")
				// The retry run is claimed and fails the same way; with
				// retries 1 the queue makes no third run.
				s = q.waitRun(t, id, 1, time.Minute)
				if s.Runs[1].ReasonCreated != "task-retry" {
					t.Errorf("run 1 reasonCreated %q", s.Runs[1].ReasonCreated)
				}
			}
			if len(s.Runs) != c.runs {
				t.Errorf("%d runs, want %d", len(s.Runs), c.runs)
			}
		})
	}
}

// duration_test: a 1 s task takes at least 1 s from start to resolution.
func TestDuration(t *testing.T) {
	q := startQueue(t, nil)
	cfg := q.workerConfig("duration")
	startWorker(t, q, cfg)
	id := q.create(t, newTask(cfg, shell("sleep 1", 60)))
	s := q.waitRun(t, id, 0, time.Minute)
	wantState(t, s, 0, tc.StateCompleted, "")
	if d := s.Runs[0].Resolved.Sub(s.Runs[0].Started); d < time.Second {
		t.Errorf("run took %v, want > 1s", d)
	}
}

// Pull-if-absent from the local registry, and a missing image failing the task.
func TestImagePull(t *testing.T) {
	dc := dockertest.Require(t)
	q := startQueue(t, nil)
	cfg := q.workerConfig("pull")
	startWorker(t, q, cfg)
	if err := dc.RemoveImage(t.Context(), dockertest.RegistryImageE2E); err != nil {
		t.Fatal(err)
	}
	p := shell("echo pulled", 60)
	p["image"] = dockertest.RegistryImageE2E
	id := q.create(t, newTask(cfg, p))
	s := q.waitRun(t, id, 0, 2*time.Minute)
	wantState(t, s, 0, tc.StateCompleted, "")
	mustContain(t, q.logOf(t, id, 0, ""), "pulled")

	p = shell("true", 60)
	p["image"] = dockertest.Registry + "/docker-worker-test/no-such-image:99.99"
	id = q.create(t, newTask(cfg, p))
	s = q.waitRun(t, id, 0, 2*time.Minute)
	wantState(t, s, 0, tc.StateFailed, "failed")
	mustContain(t, q.logOf(t, id, 0, ""), "[taskcluster:error] Pulling docker image has failed.", "no-such-image")
}

// privileged_containers_test: missing scope, and a worker that does not
// allow privileged mode, both fail the task with docker-worker's messages.
func TestPrivilegedRefused(t *testing.T) {
	q := startQueue(t, nil)
	cfg := q.workerConfig("privileged")
	startWorker(t, q, cfg)
	p := shell("true", 60)
	p["capabilities"] = map[string]any{"privileged": true}

	id := q.create(t, newTask(cfg, p))
	s := q.waitRun(t, id, 0, time.Minute)
	wantState(t, s, 0, tc.StateFailed, "failed")
	mustContain(t, q.logOf(t, id, 0, ""), "Insufficient scopes to run task in privileged mode. Try adding docker-worker:capability:privileged:null-provisioner/privileged to the .scopes array")

	def := newTask(cfg, p)
	def["scopes"] = []string{"docker-worker:capability:privileged:null-provisioner/*"}
	id = q.create(t, def)
	s = q.waitRun(t, id, 0, time.Minute)
	wantState(t, s, 0, tc.StateFailed, "failed")
	mustContain(t, q.logOf(t, id, 0, ""), "Cannot run task using docker privileged mode.  Worker must be enabled to allow running of privileged tasks.")
}
