package localqueue

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/slugid"
)

// resolveAs claims the task (on its own queue) and resolves run 0.
func (e *env) resolveAs(taskID, queueID, how string) {
	e.t.Helper()
	for _, c := range e.claim(queueID, 1) {
		if c.Status.TaskID != taskID {
			e.t.Fatalf("claimed %s, want %s", c.Status.TaskID, taskID)
		}
		var body any
		if how == "exception" {
			body = map[string]string{"reason": "malformed-payload"}
		}
		e.call("POST", runPath(taskID, c.RunID, "/"+how), credsOf(c.Credentials), body, 200, "queue/v1/task-status-response.json", nil)
		return
	}
	e.t.Fatalf("task %s was not claimable", taskID)
}

func TestDependencies(t *testing.T) {
	for _, tt := range []struct {
		requires   string
		resolution string
		wantState  string
	}{
		{"all-completed", "completed", statePending},
		{"all-completed", "failed", stateUnscheduled},
		{"all-completed", "exception", stateUnscheduled},
		{"all-resolved", "completed", statePending},
		{"all-resolved", "failed", statePending},
		{"all-resolved", "exception", statePending},
	} {
		t.Run(tt.requires+"/"+tt.resolution, func(t *testing.T) {
			e := newEnv(t, nil)
			q1, q2 := "prov/dep-one", "prov/dep-two"
			first, _ := e.createTask(e.taskDef(q1))
			second, _ := e.createTask(e.taskDef(q1))
			def := e.taskDef(q2)
			def["dependencies"] = []string{first, second}
			def["requires"] = tt.requires
			dep, st := e.createTask(def)
			if st.State != stateUnscheduled || len(st.Runs) != 0 {
				t.Fatalf("dependent task created %s with %d runs, want unscheduled", st.State, len(st.Runs))
			}
			if got := e.claim(q2, 1); len(got) != 0 {
				t.Fatalf("an unscheduled task was claimed")
			}
			e.resolveAs(first, q1, "completed")
			if st := e.status(dep); st.State != stateUnscheduled {
				t.Fatalf("after one of two dependencies: %s", st.State)
			}
			e.resolveAs(second, q1, tt.resolution)
			st = e.status(dep)
			if st.State != tt.wantState {
				t.Fatalf("after both: %s, want %s", st.State, tt.wantState)
			}
			if tt.wantState == statePending && st.Runs[0].ReasonCreated != reasonScheduled {
				t.Errorf("run 0 reasonCreated %s", st.Runs[0].ReasonCreated)
			}
			var list struct {
				TaskID string
				Tasks  []struct{ Status taskStatus }
			}
			e.call("GET", "/task/"+first+"/dependents", nil, nil, 200, "queue/v1/list-dependent-tasks-response.json", &list)
			if len(list.Tasks) != 1 || list.Tasks[0].Status.TaskID != dep {
				t.Errorf("dependents of %s = %+v", first, list)
			}
		})
	}
}

func TestDependencyOnResolvedTaskAndDeadline(t *testing.T) {
	e := newEnv(t, nil)
	q := "prov/dep-done"
	done, _ := e.createTask(e.taskDef(q))
	e.resolveAs(done, q, "completed")
	def := e.taskDef(q)
	def["dependencies"] = []string{done}
	if _, st := e.createTask(def); st.State != statePending {
		t.Fatalf("task on a completed dependency is %s, want pending", st.State)
	}
	// Blocked forever (a failed dependency with all-completed): the
	// deadline resolves it, with a run that carries the resolution.
	failed, _ := e.createTask(e.taskDef("prov/dep-fail"))
	e.resolveAs(failed, "prov/dep-fail", "failed")
	def = e.taskDef(q)
	def["dependencies"] = []string{failed}
	def["deadline"] = e.now().Add(time.Minute).UTC().Format(time.RFC3339Nano)
	blocked, _ := e.createTask(def)
	e.advance(2 * time.Minute)
	st := e.waitStatus(blocked, func(s taskStatus) bool { return s.State == stateException })
	if r := st.Runs[0]; r.ReasonCreated != reasonCreatedException || r.ReasonResolved != reasonDeadlineExceeded {
		t.Errorf("run %+v, want exception/deadline-exceeded", r)
	}
	// Expiring or missing dependencies are refused.
	short := e.taskDef(q)
	short["expires"] = e.now().Add(2 * time.Hour).UTC().Format(time.RFC3339Nano)
	shortID, _ := e.createTask(short)
	long := e.taskDef(q)
	long["dependencies"] = []string{shortID}
	long["deadline"] = e.now().Add(3 * time.Hour).UTC().Format(time.RFC3339Nano)
	eb := e.callErr("PUT", "/task/"+slugid.Nice(), &adminCreds, long, codeInputError)
	if !strings.Contains(eb.Message, shortID) {
		t.Errorf("message %q does not name the expiring dependency", eb.Message)
	}
}

func TestRerunAndSchedule(t *testing.T) {
	e := newEnv(t, nil)
	q := "prov/rerun"
	def := e.taskDef(q)
	def["retries"] = 1
	taskID, _ := e.createTask(def)
	// A retry uses up retries; a rerun resets them.
	c := e.claim(q, 1)[0]
	e.call("POST", runPath(taskID, 0, "/exception"), credsOf(c.Credentials), map[string]string{"reason": "worker-shutdown"}, 200, "", nil)
	if st := e.status(taskID); st.RetriesLeft != 0 || st.Runs[1].ReasonCreated != reasonRetry {
		t.Fatalf("after a retry: %+v", st)
	}
	var resp statusResponse
	e.call("POST", "/task/"+taskID+"/rerun", &adminCreds, nil, 200, "queue/v1/task-status-response.json", &resp)
	if len(resp.Status.Runs) != 2 {
		t.Fatalf("rerun of a pending task changed it: %+v", resp.Status)
	}
	c = e.claim(q, 1)[0]
	e.call("POST", runPath(taskID, 1, "/completed"), credsOf(c.Credentials), nil, 200, "", nil)
	e.call("POST", "/task/"+taskID+"/rerun", &adminCreds, nil, 200, "queue/v1/task-status-response.json", &resp)
	if st := resp.Status; st.State != statePending || st.RetriesLeft != 1 || st.Runs[2].ReasonCreated != reasonRerun {
		t.Fatalf("rerun of a completed task: %+v", st)
	}
	if got := e.claim(q, 1); len(got) != 1 || got[0].RunID != 2 {
		t.Fatalf("the rerun is not claimable: %+v", got)
	}
	// scheduleTask leaves scheduled tasks alone, and schedules blocked ones.
	def = e.taskDef(q)
	self := slugid.Nice()
	def["dependencies"] = []string{self}
	e.call("PUT", "/task/"+self, &adminCreds, def, 200, "queue/v1/task-status-response.json", nil)
	e.call("POST", "/task/"+self+"/schedule", &adminCreds, nil, 200, "queue/v1/task-status-response.json", &resp)
	if resp.Status.State != statePending {
		t.Fatalf("scheduleTask: %s", resp.Status.State)
	}
	e.advance(2 * time.Hour)
	e.callErr("POST", "/task/"+self+"/schedule", &adminCreds, nil, codeRequestConflict)
	e.callErr("POST", "/task/"+taskID+"/rerun", &adminCreds, nil, codeRequestConflict)
}

func TestListTaskGroupPages(t *testing.T) {
	e := newEnv(t, nil)
	group := slugid.Nice()
	var ids []string
	for range 5 {
		def := e.taskDef("prov/group")
		def["taskGroupId"] = group
		id, _ := e.createTask(def)
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var got []string
	token := ""
	for pages := 0; ; pages++ {
		path := "/task-group/" + group + "/list?limit=2"
		if token != "" {
			path += "&continuationToken=" + token
		}
		var page struct {
			TaskGroupID       string
			Tasks             []struct{ Status taskStatus }
			ContinuationToken string
		}
		e.call("GET", path, nil, nil, 200, "queue/v1/list-task-group-response.json", &page)
		for _, t := range page.Tasks {
			got = append(got, t.Status.TaskID)
		}
		if token = page.ContinuationToken; token == "" {
			break
		}
		if pages > 5 {
			t.Fatal("too many pages")
		}
	}
	if !slices.Equal(got, ids) {
		t.Errorf("listed %v, want %v", got, ids)
	}
	// A task in the group with another schedulerId is refused.
	def := e.taskDef("prov/group")
	def["taskGroupId"] = group
	def["schedulerId"] = "other"
	e.callErr("PUT", "/task/"+slugid.Nice(), &adminCreds, def, codeRequestConflict)
}

// gatedPublisher hands every delivery attempt to the test, which decides
// its outcome: Publish offers its batch on attempts and returns what the
// test sends on results (or its context's error).
type gatedPublisher struct {
	attempts chan []Message
	results  chan error
}

func newGatedPublisher() *gatedPublisher {
	return &gatedPublisher{attempts: make(chan []Message), results: make(chan error)}
}

func (p *gatedPublisher) Publish(ctx context.Context, msgs []Message) error {
	select {
	case p.attempts <- slices.Clone(msgs):
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-p.results:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// next waits for the next delivery attempt, answers it with result and
// returns the batch it offered.
func (p *gatedPublisher) next(t *testing.T, result error) []Message {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	var msgs []Message
	select {
	case msgs = <-p.attempts:
	case <-timeout.C:
		t.Fatal("timed out waiting for a delivery attempt")
	}
	select {
	case p.results <- result:
	case <-timeout.C:
		t.Fatal("timed out answering a delivery attempt")
	}
	return msgs
}

// exchangesOf lists the exchanges of msgs, without the common prefix.
func exchangesOf(msgs []Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, strings.TrimPrefix(m.Exchange, ExchangePrefix))
	}
	return out
}

// Messages produced while the broker is down wait in the durable outbox:
// failed deliveries leave them there, in order, across a restart of the
// queue; once the broker takes them they leave the outbox for good.
func TestOutboxSurvivesOutageAndRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	dataDir := t.TempDir()
	open := func(pub Publisher) *env {
		store, err := OpenBoltStore(path)
		if err != nil {
			t.Fatal(err)
		}
		e := newEnv(t, func(c *Config) { c.Store = store; c.Publisher = pub; c.DataDir = dataDir })
		t.Cleanup(func() { e.q.Close() })
		return e
	}
	down := errors.New("broker down")
	want := []string{ExchangeTaskDefined, ExchangeTaskPending, ExchangeTaskException, ExchangeTaskGroupResolved}

	before := newGatedPublisher()
	e := open(before)
	def := e.taskDef("prov/outbox")
	def["taskGroupId"] = slugid.Nice()
	taskID, _ := e.createTask(def)
	e.call("POST", "/task/"+taskID+"/cancel", &adminCreds, nil, 200, "", nil) // answered while the broker is down

	// Every attempt offers the outbox from its oldest message; a failure
	// leaves everything in place, so the retry after the one that offered
	// all four offers all four again.
	for full := 0; full < 2; {
		got := exchangesOf(before.next(t, down))
		if len(got) == 0 || len(got) > len(want) || !slices.Equal(got, want[:len(got)]) {
			t.Fatalf("attempt offered %v, want a prefix of %v", got, want)
		}
		if len(got) == len(want) {
			full++
		}
	}
	if entries, err := e.q.store.Outbox(t.Context(), 10); err != nil || len(entries) != len(want) {
		t.Fatalf("outbox after failed deliveries = %d entries, %v; want %d", len(entries), err, len(want))
	}
	e.srv.Close()
	e.q.Close()

	after := newGatedPublisher()
	e = open(after)
	if st := e.status(taskID); st.State != stateException {
		t.Fatalf("after restart: %s", st.State)
	}
	delivered := after.next(t, nil)
	if got := exchangesOf(delivered); !slices.Equal(got, want) {
		t.Fatalf("first delivery after the restart = %v, want %v", got, want)
	}
	for _, m := range delivered {
		if e.schemas != nil {
			name := strings.TrimPrefix(m.Exchange, ExchangePrefix)
			schema := "queue/v1/" + name + "-message.json"
			if name == ExchangeTaskGroupResolved {
				schema = "queue/v1/task-group-changed-message.json"
			}
			e.validate(schema, m.Body)
		}
		var body struct{ Version int }
		if json.Unmarshal(m.Body, &body) != nil || body.Version != 1 {
			t.Errorf("message %s: body %s", m.Exchange, m.Body)
		}
	}

	// The delivered messages left the outbox: the next delivery, of a new
	// task's messages, offers those alone.
	next, _ := e.createTask(e.taskDef("prov/outbox"))
	batch := after.next(t, nil)
	if got := exchangesOf(batch); !slices.Equal(got, []string{ExchangeTaskDefined, ExchangeTaskPending}) {
		t.Fatalf("delivery after the outbox drained = %v, want the new task's task-defined, task-pending", got)
	}
	for _, m := range batch {
		if !strings.Contains(m.RoutingKey, next) {
			t.Errorf("message %s has routing key %s, want one of task %s", m.Exchange, m.RoutingKey, next)
		}
	}
}

// The bolt store keeps everything a Commit wrote, across reopening.
func TestBoltStore(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "q.db")
	s, err := OpenBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := s.Secret(ctx, "issuer")
	if err != nil || len(secret) < 40 {
		t.Fatalf("Secret = %q, %v", secret, err)
	}
	rec := &TaskRecord{TaskID: "t1", Task: TaskDefinition{TaskGroupID: "g"}, Runs: []RunRecord{{State: statePending, Scheduled: time.UnixMilli(1000).UTC()}}}
	err = s.Commit(ctx, Change{
		Tasks:    []*TaskRecord{rec},
		Objects:  []*ObjectRecord{{Name: "t/a b/c", ProjectID: "p", UploadID: "u", Expires: time.UnixMilli(2000).UTC()}},
		Messages: []Message{{Exchange: "x", RoutingKey: "k1", Body: json.RawMessage(`{}`)}, {Exchange: "x", RoutingKey: "k2", Body: json.RawMessage(`{}`)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	rec.Runs[0].State = stateRunning // the store kept its own copy
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "t1"); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close = %v, want ErrClosed", err)
	}

	s, err = OpenBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Get(ctx, "t1")
	if err != nil || got.Runs[0].State != statePending || !got.Runs[0].Scheduled.Equal(time.UnixMilli(1000)) {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if _, err := s.Get(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a missing task = %v", err)
	}
	if o, err := s.Object(ctx, "t/a b/c"); err != nil || o.UploadID != "u" {
		t.Errorf("Object = %+v, %v", o, err)
	}
	if again, _ := s.Secret(ctx, "issuer"); again != secret {
		t.Error("the secret changed across reopening")
	}
	out, err := s.Outbox(ctx, 10)
	if err != nil || len(out) != 2 || out[0].RoutingKey != "k1" || out[1].RoutingKey != "k2" || out[0].Seq >= out[1].Seq {
		t.Fatalf("Outbox = %+v, %v", out, err)
	}
	if err := s.Ack(ctx, []uint64{out[0].Seq}); err != nil {
		t.Fatal(err)
	}
	if out, _ = s.Outbox(ctx, 10); len(out) != 1 || out[0].RoutingKey != "k2" {
		t.Errorf("after Ack: %+v", out)
	}
	n := 0
	if err := s.Each(ctx, func(*TaskRecord) error { n++; return nil }); err != nil || n != 1 {
		t.Errorf("Each visited %d, %v", n, err)
	}
}
