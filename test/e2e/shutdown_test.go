package e2e

// shutdown_test: with shutdown.enabled the worker stops on its own once it
// has been idle for shutdown.afterIdleSeconds ("worker idle" when it
// becomes idle, "worker working" when a claim cancels the timer), then
// performs the shutdown action: run exits 4, or shutdown.command runs.

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/shutdown"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// idleConfig is a worker config with idle shutdown after idle seconds.
func idleConfig(q *queueEnv, workerType string, idle int) *config.Config {
	cfg := q.workerConfig(workerType)
	cfg.Shutdown.Enabled = true
	cfg.Shutdown.AfterIdleSeconds = idle
	return cfg
}

// recordTime is when a log record was written.
func recordTime(t *testing.T, rec map[string]any) time.Time {
	t.Helper()
	s, _ := rec["time"].(string)
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("record %v: time: %v", rec, err)
	}
	return at
}

// messages are the worker's log messages among want, in order.
func messages(t *testing.T, logs *logSink, want ...string) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(logs.String(), "\n") {
		for _, w := range want {
			if strings.Contains(line, `"msg":"`+w+`"`) {
				out = append(out, w)
			}
		}
	}
	return out
}

func TestIdleShutdown(t *testing.T) {
	q := startQueue(t, nil)

	t.Run("shutdown without ever working a task", func(t *testing.T) {
		dockertestRequire(t)
		bin := workerBinary(t)
		cfg := idleConfig(q, "idle-never-worked", 2)
		path := writeConfig(t, cfg)
		appendFile(t, path, "shutdown: {enabled: true, afterIdleSeconds: 2}\n")
		out := &logSink{}
		cmd := exec.Command(bin, "run", "--config", path)
		cmd.Env = append(os.Environ(), "TASKCLUSTER_ROOT_URL=", "TASKCLUSTER_CLIENT_ID=", "TASKCLUSTER_ACCESS_TOKEN=")
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var err error
		select {
		case err = <-done:
		case <-time.After(2 * time.Minute):
			cmd.Process.Kill()
			<-done
			t.Fatalf("the worker still runs after 2 minutes:\n%s", out.String())
		}
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 4 {
			t.Errorf("the worker exited with %v, want exit status 4:\n%s", err, out.String())
		}
		idle := out.records("worker idle")
		if len(idle) != 1 || idle[0]["afterIdleSeconds"] != float64(2) {
			t.Errorf("worker idle records: %v, want one with afterIdleSeconds 2", idle)
		}
		if got := messages(t, out, "worker idle", "shutdown", "exit"); strings.Join(got, ",") != "worker idle,exit,shutdown" {
			t.Errorf("records %q, want worker idle, exit (of the claim loop), shutdown", got)
		}
		if sd := out.records("shutdown"); len(sd) != 1 || sd[0]["reason"] != "idle" {
			t.Errorf("shutdown records %v", sd)
		}
		if strings.Contains(out.String(), `"level":"ERROR"`) {
			t.Errorf("an idle shutdown logged an error:\n%s", out.String())
		}
	})

	t.Run("with timer shutdown", func(t *testing.T) {
		cfg := idleConfig(q, "idle-timer", 2)
		reasonFile := filepath.Join(t.TempDir(), "reason")
		cfg.Shutdown.Command = []string{"sh", "-c", `echo "$DOCKER_WORKER_SHUTDOWN_REASON" > "$1"`, "sh", reasonFile}
		id := q.create(t, newTask(cfg, shell("echo Hello", 60)))
		we := startWorker(t, q, cfg)
		wantSelfShutdown(t, we, we.waitExit(t, 2*time.Minute), shutdown.Idle)
		wantState(t, q.waitRun(t, id, 0, time.Minute), 0, tc.StateCompleted, "")
		// The first check happens before the first claim: idle, then the
		// claim makes the worker working, and it is idle again once the
		// task is done.
		got := strings.Join(messages(t, we.logs, "worker idle", "worker working", "claimed task", "task resolved", "shutdown"), ",")
		if got != "worker idle,claimed task,worker working,task resolved,worker idle,shutdown" {
			t.Errorf("records %s, want the last idle period after the task and the shutdown after it", got)
		}
		if b, err := os.ReadFile(reasonFile); err != nil || strings.TrimSpace(string(b)) != "idle" {
			t.Errorf("shutdown.command: wrote %q (%v), want idle", b, err)
		}
	})

	t.Run("cancel idle", func(t *testing.T) {
		const idle = 5
		cfg := idleConfig(q, "idle-cancel", idle)
		we := startWorker(t, q, cfg)
		we.waitLog(t, "worker idle", 1, time.Minute)
		// The task outlasts the idle time: had its claim not cancelled the
		// timer, the worker would shut down as soon as the task is done.
		id := q.create(t, newTask(cfg, shell("sleep 6; echo Done", 60)))
		err := we.waitExit(t, 2*time.Minute)
		wantSelfShutdown(t, we, err, shutdown.Idle)
		wantState(t, q.waitRun(t, id, 0, time.Minute), 0, tc.StateCompleted, "")
		got := strings.Join(messages(t, we.logs, "worker idle", "worker working", "shutdown"), ",")
		if got != "worker idle,worker working,worker idle,shutdown" {
			t.Fatalf("records %s, want idle, working, idle, shutdown", got)
		}
		second := recordTime(t, we.logs.records("worker idle")[1])
		if sd := recordTime(t, we.logs.records("shutdown")[0]); sd.Sub(second) < idle*time.Second {
			t.Errorf("shut down %v after becoming idle again, want at least %ds", sd.Sub(second), idle)
		}
	})
}
