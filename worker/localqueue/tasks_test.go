package localqueue

import (
	"encoding/json"
	"maps"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"go.dockerworker.dev/docker-worker/worker/slugid"
)

func TestPing(t *testing.T) {
	e := newEnv(t, nil)
	e.call("GET", "/ping", nil, nil, 200, "", nil)
}

func TestCreateTaskFillsDefaults(t *testing.T) {
	e := newEnv(t, nil)
	def := e.taskDef(testQueueID)
	taskID, st := e.createTask(def)
	if st.State != statePending || len(st.Runs) != 1 || st.Runs[0].State != statePending || st.Runs[0].ReasonCreated != reasonScheduled {
		t.Fatalf("status after create = %+v, want one pending run created for %q", st, reasonScheduled)
	}
	if st.RetriesLeft != 5 || st.TaskGroupID != taskID || st.SchedulerID != "-" || st.ProjectID != "none" {
		t.Errorf("status defaults = %+v", st)
	}

	var got map[string]any
	b := e.call("GET", "/task/"+taskID, nil, nil, 200, "queue/v1/task.json", &got)
	deadline, _ := time.Parse(time.RFC3339Nano, def["deadline"].(string))
	want := map[string]any{
		"provisionerId": "test-prov",
		"workerType":    "test-type",
		"taskQueueId":   testQueueID,
		"schedulerId":   "-",
		"projectId":     "none",
		"taskGroupId":   taskID,
		"dependencies":  []any{},
		"requires":      "all-completed",
		"routes":        []any{},
		"priority":      "lowest",
		"retries":       float64(5),
		"created":       formatTime(mustTime(def["created"].(string))),
		"deadline":      formatTime(deadline),
		"expires":       formatTime(deadline.AddDate(1, 0, 0)),
		"scopes":        []any{},
		"payload":       map[string]any{"command": []any{"true"}, "image": "ubuntu:24.04", "maxRunTime": float64(600)},
		"metadata":      map[string]any{"name": "test", "description": "a test task", "owner": "test@example.com", "source": "https://example.com/test"},
		"tags":          map[string]any{},
		"extra":         map[string]any{},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("task definition mismatch (-want +got):\n%s\n%s", diff, b)
	}
}

func TestCreateTaskFromProvisionerAndWorkerType(t *testing.T) {
	e := newEnv(t, nil)
	def := e.taskDef("")
	delete(def, "taskQueueId")
	def["provisionerId"], def["workerType"] = "p1", "wt-1"
	_, st := e.createTask(def)
	if st.TaskQueueID != "p1/wt-1" {
		t.Errorf("taskQueueId = %q, want p1/wt-1", st.TaskQueueID)
	}
}

func TestCreateTaskIdempotent(t *testing.T) {
	e := newEnv(t, nil)
	def := e.taskDef(testQueueID)
	def["tags"] = map[string]string{"a": "b"}
	taskID, first := e.createTask(def)

	// The same definition again, dates written differently: accepted.
	again := maps.Clone(def)
	again["created"] = mustTime(def["created"].(string)).Format(time.RFC3339Nano)
	var st statusResponse
	e.call("PUT", "/task/"+taskID, &adminCreds, again, 200, "queue/v1/task-status-response.json", &st)
	if diff := cmp.Diff(first, st.Status); diff != "" {
		t.Errorf("re-create status differs (-first +again):\n%s", diff)
	}

	// A different definition under the same taskId conflicts.
	changed := maps.Clone(def)
	changed["retries"] = 2
	e.callErr("PUT", "/task/"+taskID, &adminCreds, changed, codeRequestConflict)

	if st := e.status(taskID); len(st.Runs) != 1 {
		t.Errorf("runs after re-create = %d, want 1", len(st.Runs))
	}
}

func TestCreateTaskRejects(t *testing.T) {
	e := newEnv(t, nil)
	taskID := slugid.Nice()
	for _, tt := range []struct {
		name string
		mod  func(map[string]any)
		code string
	}{
		{"missing metadata", func(d map[string]any) { delete(d, "metadata") }, codeInputValidationError},
		{"missing created", func(d map[string]any) { delete(d, "created") }, codeInputValidationError},
		{"unknown property", func(d map[string]any) { d["bogus"] = 1 }, codeInputValidationError},
		{"payload not an object", func(d map[string]any) { d["payload"] = []int{1} }, codeInputValidationError},
		{"bad priority", func(d map[string]any) { d["priority"] = "urgent" }, codeInputValidationError},
		{"retries too high", func(d map[string]any) { d["retries"] = 50 }, codeInputValidationError},
		{"bad workerType", func(d map[string]any) { d["taskQueueId"] = "p/Upper" }, codeInputValidationError},
		{"no queue", func(d map[string]any) { delete(d, "taskQueueId") }, codeInputError},
		{"queue mismatch", func(d map[string]any) { d["provisionerId"], d["workerType"] = "other", "wt" }, codeInputError},
		{"deadline in the past", func(d map[string]any) {
			d["created"] = e.now().Add(-10 * time.Minute).Format(time.RFC3339)
			d["deadline"] = e.now().Add(-time.Minute).Format(time.RFC3339)
		}, codeInputError},
		{"deadline too far", func(d map[string]any) { d["deadline"] = e.now().Add(6 * 24 * time.Hour).Format(time.RFC3339) }, codeInputError},
		{"expires before deadline", func(d map[string]any) { d["expires"] = e.now().Add(time.Minute).Format(time.RFC3339) }, codeInputError},
	} {
		t.Run(tt.name, func(t *testing.T) {
			def := e.taskDef(testQueueID)
			tt.mod(def)
			e.callErr("PUT", "/task/"+taskID, &adminCreds, def, tt.code)
		})
	}
	t.Run("not JSON", func(t *testing.T) {
		resp, b := e.request("PUT", "/task/"+taskID, &adminCreds, []byte("{not json"))
		if resp.StatusCode != 400 {
			t.Fatalf("status = %d, want 400", resp.StatusCode)
		}
		checkErrorBody(t, b, codeMalformedPayload)
	})
	t.Run("bad taskId", func(t *testing.T) {
		e.callErr("PUT", "/task/not-a-slug", &adminCreds, e.taskDef(testQueueID), codeInvalidRequestArguments)
	})
	t.Run("unauthenticated", func(t *testing.T) {
		eb := e.callErr("PUT", "/task/"+taskID, nil, e.taskDef(testQueueID), codeInsufficientScopes)
		if eb.RequestInfo.Method != "createTask" || eb.RequestInfo.Params["taskId"] != taskID {
			t.Errorf("requestInfo = %+v", eb.RequestInfo)
		}
	})
	e.callErr("GET", "/task/"+taskID+"/status", nil, nil, codeResourceNotFound)
}

func TestTaskNotFound(t *testing.T) {
	e := newEnv(t, nil)
	id := slugid.Nice()
	e.callErr("GET", "/task/"+id, nil, nil, codeResourceNotFound)
	e.callErr("GET", "/task/"+id+"/status", nil, nil, codeResourceNotFound)
	e.callErr("POST", "/task/"+id+"/runs/0/completed", &adminCreds, nil, codeResourceNotFound)
	e.callErr("GET", "/no/such/route", nil, nil, codeResourceNotFound)
}

func TestCancelTask(t *testing.T) {
	e := newEnv(t, nil)
	c := e.claimOne(nil)
	taskID := c.Status.TaskID
	var st statusResponse
	e.call("POST", "/task/"+taskID+"/cancel", &adminCreds, nil, 200, "queue/v1/task-status-response.json", &st)
	if r := st.Status.Runs[0]; r.State != stateException || r.ReasonResolved != reasonCanceled || len(st.Status.Runs) != 1 {
		t.Fatalf("after cancel: %+v", st.Status)
	}
	creds := credsOf(c.Credentials)
	e.callErr("POST", runPath(taskID, 0, "/reclaim"), creds, nil, codeRequestConflict)
	e.callErr("POST", runPath(taskID, 0, "/completed"), creds, nil, codeRequestConflict)
	// Cancelling again changes nothing.
	e.call("POST", "/task/"+taskID+"/cancel", &adminCreds, nil, 200, "queue/v1/task-status-response.json", &st)
	if len(st.Status.Runs) != 1 || st.Status.State != stateException {
		t.Fatalf("after second cancel: %+v", st.Status)
	}

	// A pending task is cancelled before anyone claims it.
	pendingID, _ := e.createTask(e.taskDef(testQueueID))
	st = statusResponse{}
	e.call("POST", "/task/"+pendingID+"/cancel", &adminCreds, nil, 200, "queue/v1/task-status-response.json", &st)
	if r := st.Status.Runs[0]; r.State != stateException || r.ReasonResolved != reasonCanceled || r.WorkerID != "" {
		t.Fatalf("pending task after cancel: %+v", st.Status)
	}
	if got := e.claim(testQueueID, 1); len(got) != 0 {
		t.Fatalf("claimed a cancelled task: %+v", got)
	}
	e.callErr("POST", "/task/"+pendingID+"/cancel", nil, nil, codeInsufficientScopes)
}

// A second Queue over the same Store picks up where the first left off.
func TestStoreRebuild(t *testing.T) {
	store := NewMemStore()
	e := newEnv(t, func(c *Config) { c.Store = store })
	old, _ := e.createTask(e.taskDef(testQueueID))
	newer, _ := e.createTask(e.taskDef(testQueueID))
	e2 := newEnv(t, func(c *Config) { c.Store = store })
	claims := e2.claim(testQueueID, 32)
	if len(claims) != 2 || claims[0].Status.TaskID != old || claims[1].Status.TaskID != newer {
		t.Fatalf("claims after rebuild = %d tasks, want %s then %s", len(claims), old, newer)
	}
	var rec TaskRecord
	r, _ := store.Get(t.Context(), old)
	b, err := json.Marshal(r)
	if err != nil || json.Unmarshal(b, &rec) != nil || rec.Runs[0].State != stateRunning {
		t.Fatalf("record does not round-trip through JSON: %s, %v", b, err)
	}
}
