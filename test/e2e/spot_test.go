package e2e

// spot_node_termination_test: an EC2 spot interruption notice, read from an
// instance metadata service in the test (IMDSv2, token required), stops the
// worker at once: running tasks are aborted worker-shutdown after their logs
// are uploaded, and nothing is claimed after the notice, also when the
// notice is there before the worker starts.

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/shutdown"
	"go.dockerworker.dev/docker-worker/worker/spot"
	"go.dockerworker.dev/docker-worker/worker/spot/spottest"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

const spotNotice = `{"action": "terminate", "time": "2026-12-01T08:22:00Z"}`

// spotConfig is a worker config that checks srv for notices.
func spotConfig(q *queueEnv, srv *spottest.Server, workerType string) *config.Config {
	cfg := q.workerConfig(workerType)
	cfg.Shutdown.SpotTermination = true
	cfg.Shutdown.MetadataEndpoint = srv.URL
	cfg.Shutdown.NodeTerminationPoll = 100
	return cfg
}

// waitExit waits until the worker's Run returned and returns its error
// (left for the harness's clean-up to find).
func (we *workerEnv) waitExit(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case err := <-we.done:
		we.done <- err
		return err
	case <-time.After(within):
		t.Fatalf("the worker still runs after %v", within)
		return nil
	}
}

// wantSelfShutdown checks that the worker stopped itself for why.
func wantSelfShutdown(t *testing.T, we *workerEnv, err error, why shutdown.Reason) {
	t.Helper()
	if !errors.Is(err, shutdown.ErrShutDown) {
		t.Fatalf("Run returned %v, want the worker's own shutdown", err)
	}
	recs := we.logs.records("shutdown")
	if len(recs) != 1 || recs[0]["reason"] != string(why) {
		t.Errorf("shutdown records %v, want one with reason %s", recs, why)
	}
}

// wantUnclaimed checks that taskID's only run is still pending.
func (q *queueEnv) wantUnclaimed(t *testing.T, taskID string) {
	t.Helper()
	resp, err := q.admin.Status(t.Context(), taskID)
	if err != nil {
		t.Fatal(err)
	}
	s := resp.Status
	if s.State != tc.StatePending || len(s.Runs) != 1 || s.Runs[0].State != tc.StatePending || s.Runs[0].WorkerID != "" {
		t.Errorf("task %s: %+v, want its one run pending and unclaimed", taskID, s)
	}
}

// wantAborted checks that run 0 of taskID was aborted worker-shutdown with
// its log uploaded, the queue making a retry run.
func (q *queueEnv) wantAborted(t *testing.T, taskID string, wantLog, notLog string) {
	t.Helper()
	s := q.waitRun(t, taskID, 0, 2*time.Minute)
	wantState(t, s, 0, tc.StateException, "worker-shutdown")
	if len(s.Runs) != 2 || s.Runs[1].State != tc.StatePending {
		t.Errorf("no pending retry run: %+v", s.Runs)
	}
	log := q.logOf(t, taskID, 0, "public/logs/live_backing.log")
	mustContain(t, log, "[taskcluster:error] Task has been aborted prematurely. Reason: worker-shutdown")
	if wantLog != "" {
		mustContain(t, log, wantLog)
	}
	if strings.Contains(log, notLog) {
		t.Errorf("the log has %q:\n%s", notLog, log)
	}
}

func TestSpotTermination(t *testing.T) {
	q := startQueue(t, nil)

	t.Run("abort running task", func(t *testing.T) {
		srv := spottest.Start(t)
		cfg := spotConfig(q, srv, "spot-running")
		we := startFullWorker(t, q, cfg)
		id := q.create(t, newTask(cfg, shell("echo Hello; sleep 60; echo Done", 120)))
		q.waitLiveLine(t, id, "Hello\r\n")
		srv.Set(spot.InstanceActionPath, spotNotice)
		q.wantAborted(t, id, "Hello", "Done")
		wantSelfShutdown(t, we, we.waitExit(t, time.Minute), shutdown.TerminationNotice)
		if srv.Refused() != 0 {
			t.Errorf("%d metadata reads without an IMDSv2 token", srv.Refused())
		}
		if n := we.logs.count("spot termination notice: aborting running tasks, claiming no more"); n != 1 {
			t.Errorf("%d notice records, want 1", n)
		}
	})

	t.Run("abort task while pulling image", func(t *testing.T) {
		srv := spottest.Start(t)
		reg := stallingRegistry(t)
		cfg := spotConfig(q, srv, "spot-pulling")
		we := startWorker(t, q, cfg)
		payload := shell("echo Hello", 60)
		payload["image"] = reg.host + "/spot/stalls:latest"
		id := q.create(t, newTask(cfg, payload))
		select {
		case <-reg.asked:
		case <-time.After(2 * time.Minute):
			t.Fatal("the worker never pulled from the registry")
		}
		srv.Set(spot.TerminationTimePath, "2026-12-01T08:22:00Z")
		q.wantAborted(t, id, "", "Hello")
		wantSelfShutdown(t, we, we.waitExit(t, time.Minute), shutdown.TerminationNotice)
	})

	t.Run("task is not claimed on startup if node terminated", func(t *testing.T) {
		srv := spottest.Start(t)
		srv.Set(spot.InstanceActionPath, spotNotice)
		cfg := spotConfig(q, srv, "spot-startup")
		id := q.create(t, newTask(cfg, shell("echo Hello", 60)))
		we := startWorker(t, q, cfg)
		wantSelfShutdown(t, we, we.waitExit(t, time.Minute), shutdown.TerminationNotice)
		q.wantUnclaimed(t, id)
		if n := we.logs.count("claimed task"); n != 0 {
			t.Errorf("%d claims", n)
		}
	})

	t.Run("termination with one task pending and another running", func(t *testing.T) {
		srv := spottest.Start(t)
		cfg := spotConfig(q, srv, "spot-pending")
		cfg.Capacity = 1
		we := startFullWorker(t, q, cfg)
		running := q.create(t, newTask(cfg, shell("echo Hello; sleep 60; echo Done", 120)))
		q.waitLiveLine(t, running, "Hello\r\n")
		pending := q.create(t, newTask(cfg, shell("echo Hello", 60)))
		srv.Set(spot.InstanceActionPath, spotNotice)
		q.wantAborted(t, running, "Hello", "Done")
		wantSelfShutdown(t, we, we.waitExit(t, time.Minute), shutdown.TerminationNotice)
		q.wantUnclaimed(t, pending)
	})

	// Not in docker-worker: a worker that cannot tell whether a notice is
	// there claims nothing until the metadata service answers.
	t.Run("no claim before the metadata service answers", func(t *testing.T) {
		srv := spottest.Start(t)
		srv.SetFailing(true)
		cfg := spotConfig(q, srv, "spot-unanswered")
		id := q.create(t, newTask(cfg, shell("echo Hello", 60)))
		we := startWorker(t, q, cfg)
		eventually(t, "several failed metadata checks", 2*time.Minute, func() bool {
			return srv.Reads(spot.InstanceActionPath) >= 6
		})
		q.wantUnclaimed(t, id)
		srv.SetFailing(false)
		wantState(t, q.waitRun(t, id, 0, 2*time.Minute), 0, tc.StateCompleted, "")
		if we.logs.count("the instance metadata service does not answer the spot termination check: claiming nothing until it does") != 1 {
			t.Error("no record of the unanswered first check")
		}
	})
}

// registryStub is a registry that never answers: a pull from it hangs.
type registryStub struct {
	host  string
	asked chan struct{} // closed at the first request
}

func stallingRegistry(t *testing.T) *registryStub {
	t.Helper()
	r := &registryStub{asked: make(chan struct{})}
	release := make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !strings.HasPrefix(req.URL.Path, "/v2") {
			http.NotFound(w, req)
			return
		}
		once.Do(func() { close(r.asked) })
		select {
		case <-req.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	r.host = strings.TrimPrefix(srv.URL, "http://")
	return r
}
