package e2e

import (
	"go.dockerworker.dev/docker-worker/worker/pulse/pulsetest"
	"strings"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/worker/localqueue"
	"go.dockerworker.dev/docker-worker/worker/localqueue/pulse"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// pulse_cancel_test: with pulse.URL the worker hears the queue's
// task-exception message and stops the run at once, with status polling
// off; after the broker connection drops it reconnects and a later
// cancellation still arrives.

// startPulseQueue is an embedded queue publishing on broker.
func startPulseQueue(t *testing.T, broker string) *queueEnv {
	t.Helper()
	pub, err := pulse.New(pulse.Config{URL: broker})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	return startQueue(t, func(c *localqueue.Config) { c.Publisher = pub })
}

// waitLog waits until the worker log has n records with msg.
func (we *workerEnv) waitLog(t *testing.T, msg string, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for we.logs.count(msg) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d %q records after %v, want %d", we.logs.count(msg), msg, within, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const pulseListening = "pulse: listening for cancellations"

// cancelThroughPulse starts a long task, cancels it and checks that the
// worker stopped it on the Pulse message: container gone, run
// exception/canceled, a "cancel task" record from the Pulse path, nothing
// uploaded.
func cancelThroughPulse(t *testing.T, q *queueEnv, we *workerEnv, logs *taskLogs, wantCancels int) {
	t.Helper()
	id := q.create(t, newTask(we.cfg, shell("echo started; sleep 120; echo done", 300)))
	logs.waitFor(t, id, 0, "started\r\n", time.Minute)
	if cs := taskContainers(t, id); len(cs) != 1 {
		t.Fatalf("while the task runs, containers labelled with it: %v, want one", cs)
	}
	if _, err := q.admin.CancelTask(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	const within = 20 * time.Second
	canceled := time.Now()
	for cs := taskContainers(t, id); len(cs) > 0; cs = taskContainers(t, id) {
		if time.Since(canceled) > within {
			t.Fatalf("containers of the task still there %v after cancelTask: %v", within, cs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("container gone %v after cancelTask", time.Since(canceled).Round(time.Millisecond))
	for we.w.Running() > 0 {
		if time.Since(canceled) > within {
			t.Fatalf("the task kept running %v after cancelTask", within)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s := q.waitRun(t, id, 0, time.Minute)
	wantState(t, s, 0, tc.StateException, "canceled")
	text := logs.text(id, 0)
	mustContain(t, text, "started", "[taskcluster:error] Task was canceled by the queue.")
	if strings.Contains(text, "done\r\n") {
		t.Errorf("the task ran to the end; log:\n%s", text)
	}
	var fromPulse int
	for _, rec := range we.logs.records("cancel task") {
		if rec["source"] == "pulse" && rec["taskId"] == id {
			fromPulse++
		}
	}
	if fromPulse != 1 {
		t.Errorf(`%d "cancel task" records from Pulse for %s, want 1`, fromPulse, id)
	}
	if n := we.logs.count("cancel task"); n != wantCancels {
		t.Errorf(`%d "cancel task" records, want %d (status polling is off)`, n, wantCancels)
	}
	q.wantOnlyLogs(t, we, id, "[taskcluster:error] Task was canceled by the queue.")
}

func TestPulseCancel(t *testing.T) {
	broker := pulsetest.Require(t)
	q := startPulseQueue(t, broker)
	cfg := q.workerConfig("pulse-cancel")
	cfg.Task.StatusPollInterval = 0
	cfg.Pulse.URL = broker
	logs := newTaskLogs()
	we := startWorkerWith(t, q, cfg, []features.Feature{logs})
	we.waitLog(t, pulseListening, 1, 20*time.Second)
	cancelThroughPulse(t, q, we, logs, 1)
}

func TestPulseCancelAfterReconnect(t *testing.T) {
	broker := pulsetest.Require(t)
	q := startPulseQueue(t, broker)
	p := pulsetest.NewProxy(t, broker)
	cfg := q.workerConfig("pulse-reconnect")
	cfg.Task.StatusPollInterval = 0
	cfg.Pulse.URL = p.URL
	logs := newTaskLogs()
	we := startWorkerWith(t, q, cfg, []features.Feature{logs})
	we.waitLog(t, pulseListening, 1, 20*time.Second)

	p.Cut()
	we.waitLog(t, pulseListening, 2, 20*time.Second)
	if n := we.logs.count("pulse: no connection to the broker; cancellations are noticed by status polling until it is back"); n != 1 {
		t.Errorf("%d disconnection warnings, want 1", n)
	}
	cancelThroughPulse(t, q, we, logs, 1)
	if strings.Contains(we.logs.String(), "guest:guest@") {
		t.Error("the worker log shows the broker password")
	}
}
