package e2e

import (
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/tc"
)

// cancel_test: queue.cancelTask stops the running task. With status polling
// the worker notices within a poll interval (not at the next reclaim, 10
// minutes away here), kills the container, and reports nothing.
func TestCancel(t *testing.T) {
	q := startQueue(t, nil)
	cfg := q.workerConfig("cancel")
	cfg.Task.StatusPollInterval = 500
	we := startWorker(t, q, cfg)
	id := q.create(t, newTask(cfg, shell("echo started; sleep 120; echo done", 300)))
	q.waitRunning(t, id)
	if _, err := q.admin.CancelTask(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); we.w.Running() > 0; time.Sleep(50 * time.Millisecond) {
		if time.Since(start) > time.Minute {
			t.Fatal("the task kept running after cancelTask")
		}
	}
	s := q.waitRun(t, id, 0, time.Minute)
	wantState(t, s, 0, tc.StateException, "canceled")
	if we.logs.count("cancel task") != 1 {
		t.Error(`no "cancel task" in the worker log`)
	}
	if n := we.logs.count("task resolved"); n != 1 {
		t.Errorf("%d task resolved records", n)
	}
	if arts := q.artifacts(t, id, 0); len(arts) != 0 {
		t.Errorf("artifacts after cancellation: %v", arts)
	}
}
