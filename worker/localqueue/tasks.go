package localqueue

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"
)

const createTaskSchema = "/schemas/queue/v1/create-task-request.json#"

// createTaskRequest is create-task-request.json; pointers and nil slices
// tell absent properties (which get defaults) from given ones.
type createTaskRequest struct {
	ProvisionerID *string           `json:"provisionerId"`
	WorkerType    *string           `json:"workerType"`
	TaskQueueID   *string           `json:"taskQueueId"`
	SchedulerID   *string           `json:"schedulerId"`
	ProjectID     *string           `json:"projectId"`
	TaskGroupID   *string           `json:"taskGroupId"`
	Dependencies  []string          `json:"dependencies"`
	Requires      *string           `json:"requires"`
	Routes        []string          `json:"routes"`
	Priority      *string           `json:"priority"`
	Retries       *int              `json:"retries"`
	Created       *string           `json:"created"`
	Deadline      *string           `json:"deadline"`
	Expires       *string           `json:"expires"`
	Scopes        []string          `json:"scopes"`
	Payload       json.RawMessage   `json:"payload"`
	Metadata      *metadataRequest  `json:"metadata"`
	Tags          map[string]string `json:"tags"`
	Extra         json.RawMessage   `json:"extra"`
}

type metadataRequest struct {
	Name        *string `json:"name"`
	Description *string `json:"description"`
	Owner       *string `json:"owner"`
	Source      *string `json:"source"`
}

// Patterns and enums of task.json.
var (
	provisionerIDPattern = regexp.MustCompile(`^[a-zA-Z0-9-_]{1,38}$`)
	workerTypePattern    = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,36}[a-z0-9])?$`)
	defTaskQueuePattern  = regexp.MustCompile(`^[a-zA-Z0-9-_]{1,38}/[a-z]([-a-z0-9]{0,36}[a-z0-9])?$`)
	identifierPattern    = regexp.MustCompile(`^([a-zA-Z0-9-_]*)$`)
	projectIDPattern     = regexp.MustCompile(`^([a-zA-Z0-9._/-]*)$`)
	scopePattern         = regexp.MustCompile(`^[ -~]*$`)
	sourcePattern        = regexp.MustCompile(`^(https?://|ssh://|git@)`)

	priorities = []string{"highest", "very-high", "high", "medium", "low", "very-low", "lowest"}
)

// validate checks the request against create-task-request.json and returns
// the problems found.
func (in *createTaskRequest) validate() []string {
	var p []string
	check := func(ok bool, format string, args ...any) {
		if !ok {
			p = append(p, fmt.Sprintf(format, args...))
		}
	}
	str := func(name string, v *string, re *regexp.Regexp, minLen, maxLen int) {
		if v == nil {
			return
		}
		check(len(*v) >= minLen && len(*v) <= maxLen, "%s must be %d to %d characters long", name, minLen, maxLen)
		if re != nil {
			check(re.MatchString(*v), "%s %q must match %s", name, *v, re)
		}
	}
	str("provisionerId", in.ProvisionerID, provisionerIDPattern, 0, 38)
	str("workerType", in.WorkerType, workerTypePattern, 0, 38)
	str("taskQueueId", in.TaskQueueID, defTaskQueuePattern, 0, 77)
	str("schedulerId", in.SchedulerID, identifierPattern, 1, 38)
	str("projectId", in.ProjectID, projectIDPattern, 1, 500)
	str("taskGroupId", in.TaskGroupID, slugPattern, 0, 22)
	for _, d := range in.Dependencies {
		check(slugPattern.MatchString(d), "dependency %q must be a slugid", d)
	}
	check(len(in.Dependencies) <= 10000, "dependencies must have at most 10000 items")
	check(unique(in.Dependencies), "dependencies must be unique")
	if in.Requires != nil {
		check(*in.Requires == "all-completed" || *in.Requires == "all-resolved", "requires must be all-completed or all-resolved")
	}
	for _, r := range in.Routes {
		check(len(r) >= 1 && len(r) <= 249, "route %q must be 1 to 249 characters long", r)
	}
	check(len(in.Routes) <= 64, "routes must have at most 64 items")
	check(unique(in.Routes), "routes must be unique")
	if in.Priority != nil {
		check(slices.Contains(priorities, *in.Priority), "priority must be one of %s", strings.Join(priorities, ", "))
	}
	if in.Retries != nil {
		check(*in.Retries >= 0 && *in.Retries <= 49, "retries must be between 0 and 49")
	}
	check(in.Created != nil, "created is required")
	check(in.Deadline != nil, "deadline is required")
	for name, v := range map[string]*string{"created": in.Created, "deadline": in.Deadline, "expires": in.Expires} {
		if v != nil {
			_, err := parseTime(*v)
			check(err == nil, "%s %q must be a date-time", name, *v)
		}
	}
	for _, s := range in.Scopes {
		check(scopePattern.MatchString(s), "scope %q must be printable ASCII", s)
	}
	check(in.Payload != nil, "payload is required")
	if in.Payload != nil {
		check(isJSONObject(in.Payload), "payload must be an object")
	}
	if in.Extra != nil {
		check(isJSONObject(in.Extra), "extra must be an object")
	}
	for k, v := range in.Tags {
		check(len(v) <= 4096, "tag %q must be at most 4096 characters long", k)
	}
	check(in.Metadata != nil, "metadata is required")
	if m := in.Metadata; m != nil {
		for name, v := range map[string]*string{"name": m.Name, "description": m.Description, "owner": m.Owner, "source": m.Source} {
			check(v != nil, "metadata.%s is required", name)
		}
		str("metadata.name", m.Name, nil, 0, 255)
		str("metadata.description", m.Description, nil, 0, 32768)
		str("metadata.owner", m.Owner, nil, 0, 255)
		str("metadata.source", m.Source, sourcePattern, 0, 4096)
	}
	slices.Sort(p)
	return p
}

func unique(s []string) bool {
	seen := make(map[string]bool, len(s))
	for _, v := range s {
		if seen[v] {
			return false
		}
		seen[v] = true
	}
	return true
}

func isJSONObject(raw json.RawMessage) bool {
	return bytes.HasPrefix(bytes.TrimLeft(raw, " \t\r\n"), []byte("{"))
}

// canonicalJSON re-encodes a JSON value with sorted keys and no spacing, so
// that equal values compare equal (numbers keep their literal form).
func canonicalJSON(raw json.RawMessage) (json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

func orDefault[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// definition fills defaults and checks the task's dates and queue ids, as
// the real queue does before storing a task.
func (in *createTaskRequest) definition(taskID string, now time.Time) (TaskDefinition, error) {
	d := TaskDefinition{
		SchedulerID:  orDefault(in.SchedulerID, "-"),
		ProjectID:    orDefault(in.ProjectID, "none"),
		TaskGroupID:  orDefault(in.TaskGroupID, taskID),
		Dependencies: in.Dependencies,
		Requires:     orDefault(in.Requires, "all-completed"),
		Routes:       in.Routes,
		Priority:     orDefault(in.Priority, "lowest"),
		Retries:      orDefault(in.Retries, 5),
		Scopes:       in.Scopes,
		Tags:         in.Tags,
		Metadata: TaskMetadata{
			Name:        *in.Metadata.Name,
			Description: *in.Metadata.Description,
			Owner:       *in.Metadata.Owner,
			Source:      *in.Metadata.Source,
		},
	}
	d.Dependencies = cmpOrSlice(d.Dependencies)
	d.Routes = cmpOrSlice(d.Routes)
	d.Scopes = cmpOrSlice(d.Scopes)
	if d.Tags == nil {
		d.Tags = map[string]string{}
	}
	var err error
	if d.Payload, err = canonicalJSON(in.Payload); err != nil {
		return d, fmt.Errorf("payload: %w", err)
	}
	d.Extra = json.RawMessage(`{}`)
	if in.Extra != nil {
		if d.Extra, err = canonicalJSON(in.Extra); err != nil {
			return d, fmt.Errorf("extra: %w", err)
		}
	}

	prov, wt, tq := orDefault(in.ProvisionerID, ""), orDefault(in.WorkerType, ""), orDefault(in.TaskQueueID, "")
	switch {
	case prov != "" && wt != "" && tq != "":
		if prov+"/"+wt != tq {
			return d, apiErrorf(codeInputError, "taskQueueId must match \"provisionerId/workerType\"")
		}
	case prov != "" && wt != "":
		tq = prov + "/" + wt
	case tq != "":
		prov, wt, _ = strings.Cut(tq, "/")
	default:
		return d, apiErrorf(codeInputError, "at least a provisionerId and a workerType or a taskQueueId must be provided")
	}
	d.ProvisionerID, d.WorkerType, d.TaskQueueID = prov, wt, tq

	created, deadline := mustTime(*in.Created), mustTime(*in.Deadline)
	switch {
	case created.Before(now.Add(-maxClockSkew)):
		return d, apiErrorf(codeInputError, "`created` cannot be in the past (max 15min drift)")
	case created.After(now.Add(maxClockSkew)):
		return d, apiErrorf(codeInputError, "`created` cannot be in the future (max 15min drift)")
	case created.After(deadline):
		return d, apiErrorf(codeInputError, "`deadline` cannot be earlier than `created`")
	case deadline.Before(now):
		return d, apiErrorf(codeInputError, "`deadline` cannot be in the past")
	case deadline.Sub(now) > 5*24*time.Hour+maxClockSkew:
		return d, apiErrorf(codeInputError, "`deadline` cannot be more than 5 days into the future")
	}
	expires := deadline.AddDate(1, 0, 0)
	if in.Expires != nil {
		expires = mustTime(*in.Expires)
	}
	if expires.Before(deadline) {
		return d, apiErrorf(codeInputError, "`expires` cannot be before `deadline`")
	}
	d.Created, d.Deadline, d.Expires = formatTime(created), formatTime(deadline), formatTime(expires)
	for _, s := range d.Scopes {
		if strings.HasSuffix(s, "**") {
			return d, apiErrorf(codeInputError, "scopes must not end with `**`")
		}
	}
	return d, nil
}

func cmpOrSlice(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (q *Queue) createTask(w http.ResponseWriter, rq *apiRequest) error {
	taskID := rq.params["taskId"]
	var in createTaskRequest
	if err := decodeBody(rq, createTaskSchema, &in); err != nil {
		return err
	}
	if problems := in.validate(); len(problems) > 0 {
		return invalidInput(createTaskSchema, problems...)
	}
	def, err := in.definition(taskID, rq.now)
	if err != nil {
		if _, ok := errors.AsType[*apiError](err); ok {
			return err
		}
		return invalidInput(createTaskSchema, err.Error())
	}
	// Dependencies are recorded but not tracked yet: every task is pending
	// (run 0, reasonCreated "scheduled") as soon as it is created, as if its
	// dependencies were all resolved.
	rec := &TaskRecord{
		TaskID:      taskID,
		Task:        def,
		RetriesLeft: def.Retries,
		Runs:        []RunRecord{{RunID: 0, State: statePending, ReasonCreated: reasonScheduled, Scheduled: rq.now}},
	}

	ctx := rq.r.Context()
	q.mu.Lock()
	defer q.mu.Unlock()
	if sched, ok := q.groups[def.TaskGroupID]; ok && sched != def.SchedulerID {
		// An identical re-create must still succeed; only a new task conflicts.
		if existing, err := q.store.Get(ctx, taskID); err != nil || !reflect.DeepEqual(existing.Task, def) {
			return apiErrorf(codeRequestConflict, "Task group `%s` contains tasks with a schedulerId other than `%s`. All tasks in the same task-group must have the same schedulerId.", def.TaskGroupID, def.SchedulerID)
		}
	}
	if err := q.store.Create(ctx, rec); err != nil {
		if !errors.Is(err, ErrExists) {
			return err
		}
		existing, err := q.store.Get(ctx, taskID)
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(existing.Task, def) {
			return apiErrorf(codeRequestConflict, "taskId `%s` already used by another task.\nThis could be the result of faulty idempotency!", taskID)
		}
		q.reply(w, http.StatusOK, statusResponse{Status: existing.status()})
		return nil
	}
	q.groups[def.TaskGroupID] = def.SchedulerID
	q.active[taskID] = struct{}{}
	q.enqueueLocked(rec)
	q.log.Info("task created", "taskId", taskID, "taskQueueId", def.TaskQueueID)
	q.reply(w, http.StatusOK, statusResponse{Status: rec.status()})
	return nil
}

// loadTask reads a task for a request, mapping absence to ResourceNotFound.
func (q *Queue) loadTask(rq *apiRequest) (*TaskRecord, error) {
	taskID := rq.params["taskId"]
	rec, err := q.store.Get(rq.r.Context(), taskID)
	if errors.Is(err, ErrNotFound) {
		return nil, apiErrorf(codeResourceNotFound, "`%s` does not correspond to a task that exists.\nAre you sure this task has already been submitted?", taskID)
	}
	return rec, err
}

func (q *Queue) getTask(w http.ResponseWriter, rq *apiRequest) error {
	rec, err := q.loadTask(rq)
	if err != nil {
		return err
	}
	q.reply(w, http.StatusOK, rec.Task)
	return nil
}

func (q *Queue) getStatus(w http.ResponseWriter, rq *apiRequest) error {
	rec, err := q.loadTask(rq)
	if err != nil {
		return err
	}
	q.reply(w, http.StatusOK, statusResponse{Status: rec.status()})
	return nil
}

// cancelTask resolves the current run exception/canceled (adding a run if
// the task has none); resolved tasks are left as they are.
func (q *Queue) cancelTask(w http.ResponseWriter, rq *apiRequest) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	rec, err := q.loadTask(rq)
	if err != nil {
		return err
	}
	if !mustTime(rec.Task.Deadline).After(rq.now) {
		return apiErrorf(codeRequestConflict, "Task `%s` can't be canceled past its deadline of %s.", rec.TaskID, rec.Task.Deadline)
	}
	if rec.unresolved() {
		q.resolveCurrentLocked(rec, reasonCanceled, rq.now)
		if err := q.store.Update(rq.r.Context(), rec); err != nil {
			return err
		}
		delete(q.active, rec.TaskID)
		q.log.Info("task canceled", "taskId", rec.TaskID)
	}
	q.reply(w, http.StatusOK, statusResponse{Status: rec.status()})
	return nil
}

// resolveCurrentLocked resolves the task's pending or running run as
// exception with reason, without retry; a task without runs gets one
// (reasonCreated "exception") to carry the resolution.
func (q *Queue) resolveCurrentLocked(rec *TaskRecord, reason string, now time.Time) {
	n := len(rec.Runs)
	if n == 0 || (rec.Runs[n-1].State != statePending && rec.Runs[n-1].State != stateRunning) {
		rec.Runs = append(rec.Runs, RunRecord{RunID: n, State: stateException, ReasonCreated: reasonCreatedException, Scheduled: now})
		n++
	}
	r := &rec.Runs[n-1]
	r.State, r.ReasonResolved, r.Resolved = stateException, reason, now
}
