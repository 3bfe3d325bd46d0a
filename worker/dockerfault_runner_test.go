package worker_test

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"

	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockerfake"
)

// daemonGone is what the Docker client returns when the daemon went away
// under a call.
func daemonGone(step string, cause error) error {
	return fmt.Errorf("%s: %w", step, &docker.DaemonError{What: "Docker daemon unreachable", Err: cause})
}

// A task cut off by the Docker daemon going away, at any step, is resolved
// exception/worker-shutdown (the queue runs it again), its log names the
// fault and is uploaded; the container is removed all the same.
func TestDockerFaultsResolveWorkerShutdown(t *testing.T) {
	for _, tt := range []struct {
		name     string
		setup    setup
		wantLine string
	}{
		{
			name: "the wait stream breaks",
			setup: setup{script: script(dockerfake.Script{
				Steps:          []dockerfake.Step{output("working")},
				RunUntilKilled: true,
				WaitErr:        daemonGone("wait for container c1", io.ErrUnexpectedEOF),
			})},
			wantLine: "[taskcluster:error] Docker daemon unreachable: wait for container: wait for container c1: unexpected EOF",
		},
		{
			name: "the daemon refuses the create",
			setup: setup{script: script(dockerfake.Script{
				CreateErr: daemonGone("create container", syscall.ECONNREFUSED),
			})},
			wantLine: "[taskcluster:error] Docker daemon unreachable: create container: create container: connection refused",
		},
		{
			name: "the container vanished",
			setup: setup{script: script(dockerfake.Script{
				RunUntilKilled: true,
				WaitErr: fmt.Errorf("wait for container c1: %w", &docker.DaemonError{
					What: "task container disappeared (was the Docker daemon restarted?)", Err: errors.New("No such container: c1")}),
			})},
			wantLine: "[taskcluster:error] task container disappeared (was the Docker daemon restarted?): wait for container: wait for container c1: No such container: c1",
		},
		{
			name: "the daemon is gone during the pull",
			setup: setup{pullErr: func(string) error {
				return daemonGone("pull image", syscall.ECONNRESET)
			}},
			wantLine: "[taskcluster:error] Docker daemon unreachable: ",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := start(t, tt.setup)
				taskID := e.createTask(payload(600, "sleep", "600"))
				st := e.waitRun(taskID, 0)
				e.shutdown()
				if r := st.Runs[0]; r.State != "exception" || r.ReasonResolved != "worker-shutdown" {
					t.Errorf("run 0: %s/%s, want exception/worker-shutdown", r.State, r.ReasonResolved)
				}
				log, ok := e.taskLog(taskID, 0)
				if !ok {
					t.Fatal("no task log was uploaded")
				}
				for _, want := range []string{tt.wantLine, "Task has been aborted prematurely. Reason: worker-shutdown"} {
					if !strings.Contains(log, want) {
						t.Errorf("task log lacks %q:\n%s", want, log)
					}
				}
				if n := strings.Count(log, "[taskcluster:error] Docker daemon unreachable") +
					strings.Count(log, "[taskcluster:error] task container disappeared"); n != 1 {
					t.Errorf("the fault is named %d times, want once:\n%s", n, log)
				}
				if got := e.logs.count("task cut off by a Docker daemon fault"); got < 1 {
					t.Errorf("no worker log record of the fault")
				}
				// The queue runs the task again: worker-shutdown is retried.
				if runs := e.status(taskID).Runs; len(runs) < 2 || runs[1].ReasonCreated != "retry" {
					t.Errorf("runs %+v: want a run 1 created for a retry", runs)
				}
			})
		})
	}
}

// An error that is not the daemon's (a container that cannot start) still
// fails the task, as docker-worker did.
func TestOtherDockerErrorsStillFail(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := start(t, setup{script: script(dockerfake.Script{StartErr: errors.New(`exec: "nope": executable file not found in $PATH`)})})
		taskID := e.createTask(payload(600, "nope"))
		st := e.waitRun(taskID, 0)
		e.shutdown()
		if r := st.Runs[0]; r.State != "failed" {
			t.Errorf("run 0: %s/%s, want failed", r.State, r.ReasonResolved)
		}
		log, _ := e.taskLog(taskID, 0)
		if strings.Contains(log, "Docker daemon unreachable") {
			t.Errorf("task log blames the daemon:\n%s", log)
		}
	})
}
