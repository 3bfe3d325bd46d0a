package e2e

import (
	"strings"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// cancel_test: queue.cancelTask stops the running task. With status polling
// the worker notices within a poll interval (not at the next reclaim, 10
// minutes away here), kills and removes the container, writes the reason
// to the task log, and reports nothing.
func TestCancel(t *testing.T) {
	q := startQueue(t, nil)
	cfg := q.workerConfig("cancel")
	cfg.Task.StatusPollInterval = 500
	logs := newTaskLogs()
	we := startWorkerWith(t, q, cfg, []features.Feature{logs})
	id := q.create(t, newTask(cfg, shell("echo started; sleep 120; echo done", 300)))
	logs.waitFor(t, id, 0, "started\r\n", time.Minute)
	if cs := taskContainers(t, id); len(cs) != 1 {
		t.Fatalf("while the task runs, containers labelled with it: %v, want one", cs)
	}
	if _, err := q.admin.CancelTask(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	// Generous bounds: the property is that the container goes, not how fast.
	const within = 20 * time.Second
	canceled := time.Now()
	for cs := taskContainers(t, id); len(cs) > 0; cs = taskContainers(t, id) {
		if time.Since(canceled) > within {
			t.Fatalf("containers of the task still there %v after cancelTask: %v", within, cs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for we.w.Running() > 0 || we.logs.count("task resolved") == 0 {
		if time.Since(canceled) > within {
			t.Fatalf("the task kept running %v after cancelTask", within)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s := q.waitRun(t, id, 0, time.Minute)
	wantState(t, s, 0, tc.StateException, "canceled")
	log := logs.text(id, 0)
	mustContain(t, log, "started", "[taskcluster:error] Task was canceled by the queue.")
	if strings.Contains(log, "done\r\n") {
		t.Errorf("the task ran to the end; log:\n%s", log)
	}
	if we.logs.count("cancel task") != 1 {
		t.Error(`no "cancel task" in the worker log`)
	}
	if n := we.logs.count("task resolved"); n != 1 {
		t.Errorf("%d task resolved records", n)
	}
	q.wantOnlyLogs(t, we, id, "[taskcluster:error] Task was canceled by the queue.")
}
