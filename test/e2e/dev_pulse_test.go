package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/pulse/pulsetest"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// docker-worker dev whose queue publishes on a broker (--queue-config
// pulse.url) gives that broker to its worker: with status polling off, a
// cancelled task stops at once, on the Pulse message (a reclaim would take
// ten minutes).
func TestDevCancelThroughPulse(t *testing.T) {
	dockertestRequire(t)
	broker := pulsetest.Require(t)
	bin := workerBinary(t)
	dir := t.TempDir()
	queueConf := filepath.Join(dir, "queue.yml")
	workerConf := filepath.Join(dir, "worker.yml")
	if err := os.WriteFile(queueConf, fmt.Appendf(nil, "pulse: {url: %q}\n", broker), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(workerConf, []byte("task: {statusPollInterval: 0}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	q, logs, _ := startDevLogs(t, bin, filepath.Join(dir, "data"), "--queue-config", queueConf, "--config", workerConf)
	waitFor := func(what string, within time.Duration, done func() bool) {
		t.Helper()
		for start := time.Now(); !done(); time.Sleep(100 * time.Millisecond) {
			if time.Since(start) > within {
				t.Fatalf("%s: not after %v", what, within)
			}
		}
	}
	waitFor("the worker listens on the broker", time.Minute, func() bool { return logs.count(pulseListening) > 0 })

	cfg := config.Default()
	cfg.ProvisionerID, cfg.WorkerType = "local", "docker"
	id := q.create(t, newTask(cfg, shell("echo started; sleep 300", 600)))
	waitFor("the task's container runs", 2*time.Minute, func() bool { return len(taskContainers(t, id)) > 0 })
	if _, err := q.admin.CancelTask(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	waitFor("the task's container is gone after cancelTask", 30*time.Second, func() bool { return len(taskContainers(t, id)) == 0 })
	wantState(t, q.waitRun(t, id, 0, time.Minute), 0, tc.StateException, "canceled")
	var fromPulse int
	for _, rec := range logs.records("cancel task") {
		if rec["source"] == "pulse" && rec["taskId"] == id {
			fromPulse++
		}
	}
	if fromPulse != 1 {
		t.Errorf(`%d "cancel task" records from Pulse for %s, want 1; dev log:\n%s`, fromPulse, id, logs.String())
	}
}
