package e2e

// The dind feature on a real dockerd. Privileged containers cannot start
// on the test machines, so this checks the failure path end to end: the
// run is an internal error, no task container starts, and the side
// container the worker created is removed. The successful path is covered
// by the runner tier (worker/dind_runner_test.go).

import (
	"strings"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/features/dind"
	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

func TestDindServiceCannotStartIsCleanedUp(t *testing.T) {
	dc := dockertest.Require(t)
	q := startQueue(t, nil)
	cfg := q.workerConfig("dind-e2e")
	// Any image will do: the privileged side container fails to start
	// here before its command matters.
	cfg.DindImage = dockertest.Image
	startWorker(t, q, cfg)
	p := shell(`echo should-not-run`, 60)
	p["features"] = map[string]bool{"dind": true}
	id := q.create(t, newTask(cfg, p))
	st := q.waitRun(t, id, 0, 2*time.Minute)
	if r := st.Runs[0]; r.State != tc.StateException || r.ReasonResolved != "internal-error" {
		if r.State == tc.StateCompleted {
			t.Skip("privileged containers start on this machine; the failure path cannot be provoked")
		}
		t.Fatalf("run %+v, want exception/internal-error", r)
	}
	log := q.logOf(t, id, 0, "")
	mustContain(t, log, "Docker-in-Docker", "dind: start the service container")
	if strings.Contains(log, "should-not-run\r\n") {
		t.Error("the task container ran")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		left, err := dc.ListContainers(t.Context(), map[string]string{dind.TaskLabel: id})
		if err != nil {
			t.Fatal(err)
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("side containers left: %+v", left)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
