package e2e

import (
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/tc"
)

// Each task's container is removed by the real daemon after the task is
// resolved: every run is reported first, then its container goes, and the
// worker's timings record of each run ends with the removal.
func TestContainerRemovedAfterResolution(t *testing.T) {
	q := startQueue(t, nil)
	cfg := q.workerConfig("removal")
	cfg.Capacity = 2
	we := startWorker(t, q, cfg)
	var ids []string
	for range 4 {
		ids = append(ids, q.create(t, newTask(cfg, shell("echo hello", 60))))
	}
	for _, id := range ids {
		wantState(t, q.waitRun(t, id, 0, 2*time.Minute), 0, tc.StateCompleted, "")
	}
	for _, id := range ids {
		eventually(t, "the container of "+id+" removed", time.Minute, func() bool { return len(taskContainers(t, id)) == 0 })
	}
	eventually(t, "a timings record for each run", time.Minute, func() bool { return we.logs.count("task timings") == len(ids) })
	for _, rec := range we.logs.records("task timings") {
		if _, ok := rec["removedMs"].(float64); !ok {
			t.Errorf("timings record without removedMs: %v", rec)
		}
	}
}
