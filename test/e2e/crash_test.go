package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// crashWorker is a `docker-worker run` process that a test may SIGKILL and
// start again on the same config (and so the same state directory).
type crashWorker struct {
	t    *testing.T
	bin  string
	conf string
	cmd  *exec.Cmd
	out  *logSink
}

func (w *crashWorker) start() {
	w.t.Helper()
	w.out = &logSink{}
	w.cmd = exec.Command(w.bin, "run", "--config", w.conf)
	w.cmd.Env = append(os.Environ(), "TASKCLUSTER_ROOT_URL=", "TASKCLUSTER_CLIENT_ID=", "TASKCLUSTER_ACCESS_TOKEN=")
	w.cmd.Stdout, w.cmd.Stderr = w.out, w.out
	if err := w.cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	cmd, out := w.cmd, w.out
	w.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		if w.t.Failed() {
			w.t.Logf("worker output (pid %d):\n%s", cmd.Process.Pid, out.String())
		}
	})
}

// kill SIGKILLs the process and reaps it.
func (w *crashWorker) kill() {
	w.cmd.Process.Kill()
	w.cmd.Wait()
}

// containers lists the containers labelled with workerID.
func containers(t *testing.T, dc *docker.Client, workerID string) []docker.ContainerState {
	t.Helper()
	cs, err := dc.ListContainers(t.Context(), map[string]string{"dev.dockerworker.worker-id": workerID})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// A worker SIGKILLed with tasks running leaves their containers and claims;
// started again on the same state directory, it removes the containers,
// uploads each run's log so far, resolves the runs worker-shutdown (so the
// queue retries them at once rather than at claim expiry) and then runs
// the retries.
func TestCrashRecovery(t *testing.T) {
	dc := dockertest.Require(t)
	bin := workerBinary(t)
	q := startQueue(t, nil)
	cfg := q.workerConfig("crash")
	conf := writeConfig(t, cfg)
	appendFile(t, conf, "capacity: 4\n")
	w := &crashWorker{t: t, bin: bin, conf: conf}
	w.start()

	// Run 0 prints and sleeps far longer than the test; run 1 just ends.
	script := `if [ "$RUN_ID" = 0 ]; then echo "run zero started"; sleep 600; fi; echo "run $RUN_ID done"`
	var ids []string
	for range 4 {
		ids = append(ids, q.create(t, newTask(cfg, shell(script, 900))))
	}
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		running := 0
		for _, c := range containers(t, dc, cfg.WorkerID) {
			if c.Running() {
				running++
			}
		}
		if running == 4 {
			break
		}
		if time.Since(start) > 2*time.Minute {
			t.Fatalf("%d of 4 containers running", running)
		}
	}
	time.Sleep(time.Second) // let the tasks print
	w.kill()
	if n := len(containers(t, dc, cfg.WorkerID)); n != 4 {
		t.Fatalf("%d containers after the kill, want the 4 orphans", n)
	}

	w.start()
	for _, id := range ids {
		s := q.waitRun(t, id, 0, time.Minute)
		wantState(t, s, 0, tc.StateException, tc.ReasonWorkerShutdown)
		log := q.logOf(t, id, 0, "public/logs/live_backing.log")
		mustContain(t, log, "run zero started", "Task has been aborted prematurely. Reason: worker-shutdown")
	}
	for _, id := range ids {
		s := q.waitRun(t, id, 1, 2*time.Minute)
		wantState(t, s, 1, tc.StateCompleted, "")
		mustContain(t, q.logOf(t, id, 1, ""), "run 1 done")
	}
	if !strings.Contains(w.out.String(), "recovered what a previous process left") {
		t.Error("no recovery summary in the worker log")
	}
	for start := time.Now(); len(containers(t, dc, cfg.WorkerID)) > 0; time.Sleep(100 * time.Millisecond) {
		if time.Since(start) > time.Minute {
			t.Fatalf("containers left: %+v", containers(t, dc, cfg.WorkerID))
		}
	}
	w.kill()
}
