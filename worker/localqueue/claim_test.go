package localqueue

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/localqueue/internal/hawkserver"
)

func TestClaimWorkCredentials(t *testing.T) {
	e := newEnv(t, nil)
	def := e.taskDef(testQueueID)
	def["scopes"] = []string{"docker-worker:cache:foo"}
	first, _ := e.createTask(def)
	second, _ := e.createTask(e.taskDef(testQueueID))

	claims := e.claim(testQueueID, 1)
	if len(claims) != 1 || claims[0].Status.TaskID != first {
		t.Fatalf("claim = %+v, want the oldest task %s", claims, first)
	}
	c := claims[0]
	run := c.Status.Runs[0]
	if c.RunID != 0 || run.State != stateRunning || run.WorkerGroup != "wg" || run.WorkerID != "w1" || run.Started == "" || run.TakenUntil != c.TakenUntil {
		t.Fatalf("claimed run = %+v (takenUntil %s)", run, c.TakenUntil)
	}
	takenUntil := mustTime(c.TakenUntil)
	started := mustTime(run.Started)
	if got := takenUntil.Sub(started); got != DefaultClaimTimeout {
		t.Errorf("takenUntil - started = %s, want %s", got, DefaultClaimTimeout)
	}
	ms := takenUntil.UnixMilli()
	wantClient := fmt.Sprintf("task-client/%s/0/on/wg/w1/until/%d.%03d", first, ms/1000, ms%1000)
	if c.Credentials.ClientID != wantClient {
		t.Errorf("clientId = %q, want %q", c.Credentials.ClientID, wantClient)
	}
	cert, _, err := hawkserver.VerifyCertificate([]byte(c.Credentials.Certificate), c.Credentials.ClientID, testIssuerToken, e.now())
	if err != nil {
		t.Fatalf("VerifyCertificate: %v", err)
	}
	wantScopes := []string{
		"queue:reclaim-task:" + first + "/0",
		"queue:resolve-task:" + first + "/0",
		"queue:create-artifact:" + first + "/0",
		"docker-worker:cache:foo",
	}
	if !slices.Equal(cert.Scopes, wantScopes) || cert.Issuer != issuerClientID || cert.Expiry != ms {
		t.Errorf("certificate = %+v, want scopes %v, issuer %s, expiry %d", cert, wantScopes, issuerClientID, ms)
	}

	// The temporary credentials work: reclaim, then report with the new ones.
	var rc reclaimResponse
	e.call("POST", runPath(first, 0, "/reclaim"), credsOf(c.Credentials), nil, 200, "queue/v1/task-reclaim-response.json", &rc)
	if rc.RunID != 0 || rc.WorkerID != "w1" || rc.Status.Runs[0].TakenUntil != rc.TakenUntil || mustTime(rc.TakenUntil).Before(takenUntil) {
		t.Fatalf("reclaim = %+v", rc)
	}
	if rc.Credentials.Certificate == c.Credentials.Certificate {
		t.Error("reclaim returned the same certificate")
	}
	var st statusResponse
	e.call("POST", runPath(first, 0, "/completed"), credsOf(rc.Credentials), nil, 200, "queue/v1/task-status-response.json", &st)
	if st.Status.State != stateCompleted || st.Status.Runs[0].ReasonResolved != stateCompleted || st.Status.Runs[0].Resolved == "" {
		t.Fatalf("after reportCompleted: %+v", st.Status)
	}

	claims = e.claim(testQueueID, 4)
	if len(claims) != 1 || claims[0].Status.TaskID != second {
		t.Fatalf("second claim = %+v, want only %s", claims, second)
	}
}

func TestClaimWorkAtMost32(t *testing.T) {
	e := newEnv(t, nil)
	var ids []string
	for range 34 {
		id, _ := e.createTask(e.taskDef(testQueueID))
		ids = append(ids, id)
	}
	claims := e.claim(testQueueID, 32)
	if len(claims) != 32 {
		t.Fatalf("claimed %d tasks, want 32", len(claims))
	}
	for i, c := range claims {
		if c.Status.TaskID != ids[i] {
			t.Fatalf("claim %d is %s, want %s (oldest first)", i, c.Status.TaskID, ids[i])
		}
	}
	tooMany := map[string]any{"tasks": 33, "workerGroup": "wg", "workerId": "w1"}
	if e.schemas != nil {
		b, _ := json.Marshal(tooMany)
		if e.schemas.Validate("queue/v1/claim-work-request.json", b) == nil {
			t.Error("the request schema accepts tasks=33")
		}
	}
	e.callErr("POST", "/claim-work/"+url.PathEscape(testQueueID), &adminCreds, tooMany, codeInputValidationError)
	e.callErr("POST", "/claim-work/"+url.PathEscape(testQueueID), &adminCreds, map[string]any{"tasks": 1, "workerGroup": "wg"}, codeInputValidationError)
	if got := e.claim(testQueueID, 32); len(got) != 2 {
		t.Fatalf("claimed %d tasks, want the 2 left", len(got))
	}
}

func TestClaimWorkPathForms(t *testing.T) {
	e := newEnv(t, nil)
	e.createTask(e.taskDef(testQueueID))
	e.createTask(e.taskDef(testQueueID))
	req := map[string]any{"tasks": 1, "workerGroup": "wg", "workerId": "w1"}
	for _, path := range []string{"/claim-work/test-prov%2Ftest-type", "/claim-work/test-prov/test-type"} {
		var resp claimWorkResponse
		e.call("POST", path, &adminCreds, req, 200, "queue/v1/claim-work-response.json", &resp)
		if len(resp.Tasks) != 1 {
			t.Errorf("POST %s claimed %d tasks, want 1", path, len(resp.Tasks))
		}
	}
	e.callErr("POST", "/claim-work/no-slash", &adminCreds, req, codeInvalidRequestArguments)
	e.callErr("POST", "/claim-work/"+url.PathEscape(testQueueID), nil, req, codeInsufficientScopes)
}

func TestClaimWorkLongPollTimesOut(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ClaimWait = 300 * time.Millisecond })
	start := time.Now()
	if got := e.claim("prov/empty", 1); len(got) != 0 {
		t.Fatalf("claim on an empty queue = %+v", got)
	}
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Errorf("claim answered after %s, before ClaimWait", waited)
	}
}

func TestClaimWorkWakesOnCreate(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ClaimWait = 10 * time.Second })
	type result struct {
		claims []claimJSON
		err    string
	}
	done := make(chan result, 1)
	go func() {
		body := `{"tasks": 2, "workerGroup": "wg", "workerId": "w1"}`
		resp, b := e.request("POST", "/claim-work/"+url.PathEscape(testQueueID), &adminCreds, []byte(body))
		var r claimWorkResponse
		if err := json.Unmarshal(b, &r); err != nil || resp.StatusCode != 200 {
			done <- result{err: fmt.Sprintf("%d %s", resp.StatusCode, b)}
			return
		}
		done <- result{claims: r.Tasks}
	}()
	// Wait until the claim is parked on the queue's wake channel.
	for {
		e.q.mu.Lock()
		tq := e.q.queues[testQueueID]
		waiting := tq != nil && tq.wake != nil
		e.q.mu.Unlock()
		if waiting {
			break
		}
		time.Sleep(time.Millisecond)
	}
	taskID, _ := e.createTask(e.taskDef(testQueueID))
	r := <-done
	if r.err != "" {
		t.Fatalf("claim failed: %s", r.err)
	}
	// Returning the task (rather than an empty list at the end of the
	// 10 s wait) shows the claim was woken by the creation.
	if len(r.claims) != 1 || r.claims[0].Status.TaskID != taskID {
		t.Fatalf("woken claim = %+v, want task %s", r.claims, taskID)
	}
}

func TestReportResolutions(t *testing.T) {
	e := newEnv(t, nil)
	for _, tt := range []struct {
		name         string
		retries      int
		path         string
		reason       string
		wantState    string
		wantRetry    string // reasonCreated of run 1, "" for none
		wantRetriesL int
	}{
		{"completed", 5, "/completed", "", stateCompleted, "", 5},
		{"failed", 5, "/failed", "", stateFailed, "", 5},
		{"worker-shutdown", 5, "/exception", "worker-shutdown", stateException, reasonRetry, 4},
		{"intermittent-task", 5, "/exception", "intermittent-task", stateException, reasonTaskRetry, 4},
		{"worker-shutdown without retries", 0, "/exception", "worker-shutdown", stateException, "", 0},
		{"intermittent-task without retries", 0, "/exception", "intermittent-task", stateException, "", 0},
		{"malformed-payload", 5, "/exception", "malformed-payload", stateException, "", 5},
		{"resource-unavailable", 5, "/exception", "resource-unavailable", stateException, "", 5},
		{"internal-error", 5, "/exception", "internal-error", stateException, "", 5},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := e.claimOne(func(d map[string]any) { d["retries"] = tt.retries })
			taskID, creds := c.Status.TaskID, credsOf(c.Credentials)
			var body any
			if tt.reason != "" {
				body = map[string]string{"reason": tt.reason}
				b, _ := json.Marshal(body)
				e.validate("queue/v1/task-exception-request.json", b)
			}
			var st statusResponse
			e.call("POST", runPath(taskID, 0, tt.path), creds, body, 200, "queue/v1/task-status-response.json", &st)
			r0 := st.Status.Runs[0]
			wantReason := tt.reason
			if wantReason == "" {
				wantReason = tt.wantState
			}
			if r0.State != tt.wantState || r0.ReasonResolved != wantReason || r0.Resolved == "" {
				t.Fatalf("run 0 = %+v, want %s/%s", r0, tt.wantState, wantReason)
			}
			if st.Status.RetriesLeft != tt.wantRetriesL {
				t.Errorf("retriesLeft = %d, want %d", st.Status.RetriesLeft, tt.wantRetriesL)
			}
			if tt.wantRetry == "" {
				if len(st.Status.Runs) != 1 || st.Status.State != tt.wantState {
					t.Fatalf("status = %+v, want one resolved run", st.Status)
				}
			} else {
				if len(st.Status.Runs) != 2 || st.Status.Runs[1].State != statePending || st.Status.Runs[1].ReasonCreated != tt.wantRetry || st.Status.State != statePending {
					t.Fatalf("status = %+v, want run 1 pending (%s)", st.Status, tt.wantRetry)
				}
			}
			// Repeating the same resolution is idempotent; another conflicts.
			var again statusResponse
			e.call("POST", runPath(taskID, 0, tt.path), creds, body, 200, "queue/v1/task-status-response.json", &again)
			if len(again.Status.Runs) != len(st.Status.Runs) {
				t.Errorf("repeated report changed the runs: %+v", again.Status)
			}
			other := "/failed"
			if tt.path == "/failed" {
				other = "/completed"
			}
			e.callErr("POST", runPath(taskID, 0, other), creds, nil, codeRequestConflict)
			e.callErr("POST", runPath(taskID, 0, "/reclaim"), creds, nil, codeRequestConflict)

			if tt.wantRetry != "" {
				// The retry run is claimable like any pending run.
				claims := e.claim(st.Status.TaskQueueID, 1)
				if len(claims) != 1 || claims[0].RunID != 1 || claims[0].Status.TaskID != taskID {
					t.Fatalf("claim of the retry = %+v", claims)
				}
				if !strings.Contains(claims[0].Credentials.ClientID, "/"+taskID+"/1/") {
					t.Errorf("retry clientId %q does not name run 1", claims[0].Credentials.ClientID)
				}
			}
		})
	}
}

func TestReportRejects(t *testing.T) {
	e := newEnv(t, nil)
	taskID, _ := e.createTask(e.taskDef(testQueueID))
	e.callErr("POST", runPath(taskID, 0, "/completed"), &adminCreds, nil, codeRequestConflict) // pending, not running
	e.callErr("POST", runPath(taskID, 1, "/completed"), &adminCreds, nil, codeResourceNotFound)
	e.callErr("POST", runPath(taskID, 0, "/completed"), nil, nil, codeInsufficientScopes)
	e.callErr("POST", runPath(taskID, 0, "/exception"), &adminCreds, map[string]string{"reason": "claim-expired"}, codeInputValidationError)
	e.callErr("POST", runPath(taskID, 0, "/exception"), &adminCreds, map[string]string{}, codeInputValidationError)
	e.callErr("POST", runPath(taskID, 0, "/reclaim"), &adminCreds, nil, codeRequestConflict)
}

func TestClaimExpiry(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.ClaimTimeout = 50 * time.Millisecond
		c.ExpiryInterval = 10 * time.Millisecond
	})
	for _, tt := range []struct {
		name    string
		retries int
	}{{"retried", 2}, {"no retries left", 0}} {
		t.Run(tt.name, func(t *testing.T) {
			c := e.claimOne(func(d map[string]any) { d["retries"] = tt.retries })
			taskID := c.Status.TaskID
			st := e.waitStatus(taskID, func(s taskStatus) bool { return s.Runs[0].State != stateRunning })
			if r := st.Runs[0]; r.State != stateException || r.ReasonResolved != reasonClaimExpired {
				t.Fatalf("run 0 = %+v, want exception/claim-expired", r)
			}
			if tt.retries > 0 {
				if len(st.Runs) != 2 || st.Runs[1].State != statePending || st.Runs[1].ReasonCreated != reasonRetry || st.RetriesLeft != tt.retries-1 {
					t.Fatalf("status = %+v, want run 1 pending (retry)", st)
				}
			} else if len(st.Runs) != 1 || st.State != stateException {
				t.Fatalf("status = %+v, want the task resolved", st)
			}
			e.callErr("POST", runPath(taskID, 0, "/reclaim"), &adminCreds, nil, codeRequestConflict)
			e.callErr("POST", runPath(taskID, 0, "/completed"), &adminCreds, nil, codeRequestConflict)
		})
	}
}

// waitStatus polls the task's status until done accepts it (or 10 s pass).
func (e *env) waitStatus(taskID string, done func(taskStatus) bool) taskStatus {
	e.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		st := e.status(taskID)
		if done(st) {
			return st
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("status of %s never reached the expected state: %+v", taskID, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDeadlineExceeded(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ExpiryInterval = 10 * time.Millisecond })
	running := e.claimOne(nil)
	pendingID, _ := e.createTask(e.taskDef(testQueueID))

	// Move the queue's clock past the deadlines (the reclaim below arrives
	// before, or after, the background check: the outcome is the same).
	e.advance(2 * time.Hour)
	e.callErr("POST", runPath(running.Status.TaskID, 0, "/reclaim"), &adminCreds, nil, codeRequestConflict)
	st := e.status(running.Status.TaskID)
	if r := st.Runs[0]; len(st.Runs) != 1 || r.State != stateException || r.ReasonResolved != reasonDeadlineExceeded {
		t.Fatalf("running task after its deadline: %+v", st)
	}
	e.callErr("POST", runPath(running.Status.TaskID, 0, "/completed"), credsOf(running.Credentials), nil, codeAuthenticationFailed) // credentials expired too
	e.callErr("POST", runPath(running.Status.TaskID, 0, "/completed"), &adminCreds, nil, codeRequestConflict)

	st = e.waitStatus(pendingID, func(s taskStatus) bool { return s.State != statePending })
	if r := st.Runs[0]; len(st.Runs) != 1 || r.State != stateException || r.ReasonResolved != reasonDeadlineExceeded || r.WorkerID != "" {
		t.Fatalf("pending task after its deadline: %+v", st)
	}
	if got := e.claim(testQueueID, 1); len(got) != 0 {
		t.Fatalf("claimed a task past its deadline: %+v", got)
	}
	e.callErr("POST", "/task/"+pendingID+"/cancel", &adminCreds, nil, codeRequestConflict)
}
