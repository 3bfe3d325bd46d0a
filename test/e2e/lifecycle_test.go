package e2e

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// capacity_test: ten 2-second tasks at capacity 10 all run at once. Checked
// structurally: every run started before any run resolved.
func TestCapacity(t *testing.T) {
	q := startQueue(t, nil)
	cfg := q.workerConfig("capacity")
	cfg.Capacity = 10
	startWorker(t, q, cfg)
	var ids []string
	for range 10 {
		ids = append(ids, q.create(t, newTask(cfg, shell("sleep 2", 60))))
	}
	var lastStart, firstEnd time.Time
	for _, id := range ids {
		s := q.waitRun(t, id, 0, 3*time.Minute)
		wantState(t, s, 0, tc.StateCompleted, "")
		r := s.Runs[0]
		if r.Started.After(lastStart) {
			lastStart = r.Started
		}
		if firstEnd.IsZero() || r.Resolved.Before(firstEnd) {
			firstEnd = r.Resolved
		}
	}
	if !lastStart.Before(firstEnd) {
		t.Errorf("runs did not overlap: last start %v, first resolution %v", lastStart, firstEnd)
	}
}

// parallel_worker_test: two workers on one queue each run one of two tasks.
func TestParallelWorkers(t *testing.T) {
	q := startQueue(t, nil)
	cfg1 := q.workerConfig("parallel")
	cfg2 := q.workerConfig("parallel")
	startWorker(t, q, cfg1)
	startWorker(t, q, cfg2)
	a := q.create(t, newTask(cfg1, shell("sleep 3", 60)))
	b := q.create(t, newTask(cfg1, shell("sleep 3", 60)))
	sa := q.waitRun(t, a, 0, 2*time.Minute)
	sb := q.waitRun(t, b, 0, 2*time.Minute)
	wantState(t, sa, 0, tc.StateCompleted, "")
	wantState(t, sb, 0, tc.StateCompleted, "")
	if sa.Runs[0].WorkerID == sb.Runs[0].WorkerID {
		t.Errorf("both tasks ran on %s", sa.Runs[0].WorkerID)
	}
}

// reclaim_test: with reclaimDivisor 1000 a 20-minute claim is reclaimed
// about every 1.2 s; the task still completes.
func TestReclaim(t *testing.T) {
	q := startQueue(t, nil)
	cfg := q.workerConfig("reclaim")
	cfg.Task.ReclaimDivisor = 1000
	we := startWorker(t, q, cfg)
	id := q.create(t, newTask(cfg, shell("sleep 5", 60)))
	s := q.waitRun(t, id, 0, 2*time.Minute)
	wantState(t, s, 0, tc.StateCompleted, "")
	if n := we.logs.count("reclaimed task"); n < 2 {
		t.Errorf("reclaimed %d times, want more than once", n)
	}
}

// reclaim_test "task canceled when reclaiming past deadline": the queue
// resolves the run deadline-exceeded; the worker stops the task (at the
// deadline itself, which bounds maxRunTime, or at the reclaim that then
// answers 409) and reports nothing; it uploads the task log.
func TestReclaimPastDeadline(t *testing.T) {
	q := startQueue(t, nil)
	cfg := q.workerConfig("deadline")
	cfg.Task.ReclaimDivisor = 1000
	we := startWorker(t, q, cfg)
	def := newTask(cfg, shell("echo started; sleep 60; echo done", 120))
	def["deadline"] = time.Now().Add(4 * time.Second).UTC().Format("2006-01-02T15:04:05.000Z")
	id := q.create(t, def)
	s := q.waitRun(t, id, 0, 2*time.Minute)
	wantState(t, s, 0, tc.StateException, "deadline-exceeded")
	for start := time.Now(); we.w.Running() > 0 || we.logs.count("task resolved") == 0; {
		if time.Since(start) > 45*time.Second {
			t.Fatal("the worker kept running the task after its deadline")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if we.logs.count("error reclaiming task")+we.logs.count("task deadline passed") == 0 {
		t.Error("the worker logged neither the deadline nor a failed reclaim")
	}
	q.wantOnlyLogs(t, we, id, "Unsuccessful task run with exit code: -1")
}

// writeConfig writes a worker config file for the built binary.
func writeConfig(t *testing.T, c *config.Config) string {
	t.Helper()
	body := "rootUrl: " + c.RootURL + "\n" +
		"taskcluster: {clientId: " + c.Taskcluster.ClientID + ", accessToken: " + c.Taskcluster.AccessToken + "}\n" +
		"provisionerId: " + c.ProvisionerID + "\nworkerType: " + c.WorkerType + "\n" +
		"workerGroup: " + c.WorkerGroup + "\nworkerId: " + c.WorkerID + "\n" +
		"workerNodeType: test-worker\npublicIp: 127.0.0.1\ntaskQueue: {pollInterval: 100, maxBackoff: 1000}\n" +
		"logging: {liveLogBindAddress: 127.0.0.1}\ncapacityManagement: {diskspaceThreshold: 1000000000}\n" +
		"stateDir: " + t.TempDir() + "\n"
	p := filepath.Join(t.TempDir(), "worker.yml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitLiveLine waits until the task runs and its live log, read from the
// worker's live log server as it is written, contains want.
func (q *queueEnv) waitLiveLine(t *testing.T, id, want string) {
	t.Helper()
	u := q.waitReference(t, id, "public/logs/live.log")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("live log: %v", err)
	}
	defer resp.Body.Close()
	var got []byte
	buf := make([]byte, 4096)
	for !bytes.Contains(got, []byte(want)) {
		n, err := resp.Body.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil && !bytes.Contains(got, []byte(want)) {
			t.Fatalf("live log ended (%v) without %q:\n%s", err, want, got)
		}
	}
}

// signal_test and spot_node_termination_test "abort running task": SIGTERM
// aborts the running task with worker-shutdown after uploading its log; the
// queue makes a retry run. SIGINT instead lets the running task finish.
func TestSignals(t *testing.T) {
	bin := workerBinary(t)
	q := startQueue(t, nil)

	start := func(t *testing.T, cfg *config.Config) (*exec.Cmd, *logSink) {
		out := &logSink{}
		cmd := exec.Command(bin, "run", "--config", writeConfig(t, cfg))
		cmd.Env = append(os.Environ(), "TASKCLUSTER_ROOT_URL=", "TASKCLUSTER_CLIENT_ID=", "TASKCLUSTER_ACCESS_TOKEN=")
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				cmd.Process.Kill()
				cmd.Wait()
			}
			if t.Failed() {
				t.Logf("worker output:\n%s", out.String())
			}
		})
		return cmd, out
	}
	exitWithin := func(t *testing.T, cmd *exec.Cmd, d time.Duration) {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("worker exited with %v", err)
			}
		case <-time.After(d):
			t.Fatalf("worker still running %v after the signal", d)
		}
	}

	t.Run("SIGTERM", func(t *testing.T) {
		cfg := q.workerConfig("sigterm")
		dockertestRequire(t)
		cmd, _ := start(t, cfg)
		id := q.create(t, newTask(cfg, shell("echo Hello; sleep 60; echo Done", 120)))
		q.waitLiveLine(t, id, "Hello\r\n")
		cmd.Process.Signal(syscall.SIGTERM)
		exitWithin(t, cmd, time.Minute)
		s := q.waitRun(t, id, 0, time.Minute)
		wantState(t, s, 0, tc.StateException, "worker-shutdown")
		if len(s.Runs) != 2 || s.Runs[1].State != tc.StatePending {
			t.Errorf("no pending retry run: %+v", s.Runs)
		}
		log := q.logOf(t, id, 0, "public/logs/live_backing.log")
		mustContain(t, log, "Hello", "[taskcluster:error] Task has been aborted prematurely. Reason: worker-shutdown")
		if strings.Contains(log, "Done") {
			t.Error("the task ran to the end")
		}
	})

	t.Run("SIGINT finishes running tasks", func(t *testing.T) {
		cfg := q.workerConfig("sigint")
		dockertestRequire(t)
		cmd, out := start(t, cfg)
		// The task outlives the signal by far, so that it is still running
		// when the worker takes the interrupt; that is checked below.
		id := q.create(t, newTask(cfg, shell("echo Hello; sleep 10; echo Done", 120)))
		q.waitLiveLine(t, id, "Hello\r\n")
		cmd.Process.Signal(os.Interrupt)
		const interrupted = "interrupt: finishing running tasks, claiming no more"
		for start := time.Now(); out.count(interrupted) == 0; time.Sleep(20 * time.Millisecond) {
			if time.Since(start) > time.Minute {
				t.Fatalf("no %q record after SIGINT", interrupted)
			}
		}
		if cs := taskContainers(t, id); len(cs) != 1 || !strings.HasSuffix(cs[0], " running") {
			t.Fatalf("when the worker took the interrupt the task's containers were %v, want one running: the test proves nothing", cs)
		}
		exitWithin(t, cmd, time.Minute)
		s := q.waitRun(t, id, 0, time.Minute)
		wantState(t, s, 0, tc.StateCompleted, "")
		mustContain(t, q.logOf(t, id, 0, ""), "Hello", "Done")
	})
}
