package localqueue

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strconv"
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

// createAuthParams are the parameters of createTask's scope expression.
func createAuthParams(taskID string, d *TaskDefinition) map[string]any {
	i := slices.Index(priorities, d.Priority)
	return map[string]any{
		"taskId":        taskID,
		"scopes":        d.Scopes,
		"routes":        d.Routes,
		"projectId":     d.ProjectID,
		"schedulerId":   d.SchedulerID,
		"taskGroupId":   d.TaskGroupID,
		"provisionerId": d.ProvisionerID,
		"workerType":    d.WorkerType,
		"taskQueueId":   d.TaskQueueID,
		"priorities":    slices.Clone(priorities[:i+1]), // this priority or a higher one
	}
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
	if err := rq.authorize(createAuthParams(taskID, &def)); err != nil {
		return err
	}

	q.mu.Lock()
	defer q.mu.Unlock()
	t := q.begin(rq.r.Context())
	existing, err := t.get(taskID)
	switch {
	case err == nil:
		if !reflect.DeepEqual(existing.Task, def) {
			return apiErrorf(codeRequestConflict, "taskId `%s` already used by another task.\nThis could be the result of faulty idempotency!", taskID)
		}
		q.reply(w, http.StatusOK, statusResponse{Status: existing.status()})
		return nil
	case !errors.Is(err, ErrNotFound):
		return err
	}
	if g, ok := q.groups[def.TaskGroupID]; ok && g.schedulerID != def.SchedulerID {
		return apiErrorf(codeRequestConflict, "Task group `%s` contains tasks with a schedulerId other than `%s`. All tasks in the same task-group must have the same schedulerId.", def.TaskGroupID, def.SchedulerID)
	}
	rec := &TaskRecord{TaskID: taskID, Task: def, RetriesLeft: def.Retries, Runs: []RunRecord{}}
	if err := q.checkDependencies(t, rec); err != nil {
		return err
	}
	t.put(rec)
	t.msgOf(func() Message { return msgTaskDefined(rec) }) // the status before scheduling: unscheduled, no runs
	if ready, err := q.dependenciesSatisfied(t, rec); err != nil {
		return err
	} else if ready {
		q.scheduleLocked(t, rec, rq.now)
	}
	if err := t.commit(); err != nil {
		return err
	}
	q.log.Info("task created", "taskId", taskID, "taskQueueId", def.TaskQueueID, "state", rec.taskState())
	q.reply(w, http.StatusOK, statusResponse{Status: rec.status()})
	return nil
}

// checkDependencies checks that every dependency exists (a task may depend
// on itself) and does not expire before the task's deadline.
func (q *Queue) checkDependencies(t *tx, rec *TaskRecord) error {
	var missing, expiring []string
	deadline := mustTime(rec.Task.Deadline)
	for _, dep := range rec.Task.Dependencies {
		if dep == rec.TaskID {
			continue
		}
		d, err := t.get(dep)
		switch {
		case errors.Is(err, ErrNotFound):
			missing = append(missing, dep)
		case err != nil:
			return err
		case mustTime(d.Task.Expires).Before(deadline):
			expiring = append(expiring, dep)
		}
	}
	if len(missing) == 0 && len(expiring) == 0 {
		return nil
	}
	var b strings.Builder
	if len(missing) > 0 {
		b.WriteString("`task.dependencies` references tasks that do not exist:\n")
		for _, id := range missing {
			b.WriteString(" * " + id + "\n")
		}
		b.WriteString("Every taskId in `task.dependencies` must exist before the task is created.\n")
	}
	if len(expiring) > 0 {
		b.WriteString("`task.dependencies` references tasks that expire before `task.deadline`:\n")
		for _, id := range expiring {
			b.WriteString(" * " + id + "\n")
		}
		b.WriteString("Every task in `task.dependencies` must have `expires` later than this task's `deadline`.\n")
	}
	return apiErrorf(codeInputError, "%s", b.String())
}

// dependenciesSatisfied reports whether the task may be scheduled: every
// dependency completed (requires all-completed) or resolved in any way
// (all-resolved). A task depending on itself never is.
func (q *Queue) dependenciesSatisfied(t *tx, rec *TaskRecord) (bool, error) {
	for _, dep := range rec.Task.Dependencies {
		if dep == rec.TaskID {
			return false, nil
		}
		d, err := t.get(dep)
		if err != nil {
			return false, err
		}
		switch d.taskState() {
		case stateCompleted:
		case stateFailed, stateException:
			if rec.Task.Requires != "all-resolved" {
				return false, nil
			}
		default:
			return false, nil
		}
	}
	return true, nil
}

// scheduleLocked gives an unscheduled task its first, pending run.
func (q *Queue) scheduleLocked(t *tx, rec *TaskRecord, now time.Time) {
	if len(rec.Runs) > 0 {
		return
	}
	rec.Runs = append(rec.Runs, RunRecord{RunID: 0, State: statePending, ReasonCreated: reasonScheduled, Scheduled: now})
	t.put(rec)
	t.pending = append(t.pending, rec.TaskID)
	t.msgOf(func() Message { return msgTaskPending(rec, 0) })
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

// taskAuthParams are the parameters of the schedule, rerun and cancel scope
// expressions, which come from the task.
func taskAuthParams(rec *TaskRecord) map[string]any {
	return map[string]any{
		"schedulerId": rec.Task.SchedulerID,
		"taskGroupId": rec.Task.TaskGroupID,
		"projectId":   rec.Task.ProjectID,
	}
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

const tasksRequestSchema = "/schemas/queue/v1/tasks-request.json#"

// taskIDsRequest reads the body of tasks and statuses and authorizes it.
func taskIDsRequest(rq *apiRequest) ([]string, error) {
	var in struct {
		TaskIDs []string `json:"taskIds"`
	}
	if err := decodeBody(rq, tasksRequestSchema, &in); err != nil {
		return nil, err
	}
	if in.TaskIDs == nil {
		in.TaskIDs = []string{}
	}
	if err := rq.authorize(map[string]any{"taskIds": in.TaskIDs}); err != nil {
		return nil, err
	}
	return in.TaskIDs, nil
}

// eachExisting calls fn for each distinct task of ids that exists, in order.
func (q *Queue) eachExisting(rq *apiRequest, ids []string, fn func(*TaskRecord)) error {
	for _, id := range uniqueStrings(ids) {
		rec, err := q.store.Get(rq.r.Context(), id)
		if errors.Is(err, ErrNotFound) {
			continue
		} else if err != nil {
			return err
		}
		fn(rec)
	}
	return nil
}

// getTasks answers the definitions of the given tasks that exist (one
// page holds them all).
func (q *Queue) getTasks(w http.ResponseWriter, rq *apiRequest) error {
	ids, err := taskIDsRequest(rq)
	if err != nil {
		return err
	}
	type entry struct {
		TaskID string         `json:"taskId"`
		Task   TaskDefinition `json:"task"`
	}
	out := struct {
		Tasks []entry `json:"tasks"`
	}{Tasks: []entry{}}
	if err := q.eachExisting(rq, ids, func(rec *TaskRecord) {
		out.Tasks = append(out.Tasks, entry{rec.TaskID, rec.Task})
	}); err != nil {
		return err
	}
	q.reply(w, http.StatusOK, out)
	return nil
}

// getStatuses answers the statuses of the given tasks that exist.
func (q *Queue) getStatuses(w http.ResponseWriter, rq *apiRequest) error {
	ids, err := taskIDsRequest(rq)
	if err != nil {
		return err
	}
	type entry struct {
		TaskID string     `json:"taskId"`
		Status taskStatus `json:"status"`
	}
	out := struct {
		Statuses []entry `json:"statuses"`
	}{Statuses: []entry{}}
	if err := q.eachExisting(rq, ids, func(rec *TaskRecord) {
		out.Statuses = append(out.Statuses, entry{rec.TaskID, rec.status()})
	}); err != nil {
		return err
	}
	q.reply(w, http.StatusOK, out)
	return nil
}

func uniqueStrings(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// taskForChange loads the route's task for a change of state: 404 with
// the real queue's wording for that route (notFound, given the taskId) when
// it does not exist, the route's scopes checked, and 409 (pastDeadline,
// given the taskId and deadline) once its deadline has passed.
func (q *Queue) taskForChange(rq *apiRequest, notFound, pastDeadline string) (*TaskRecord, error) {
	rec, err := q.store.Get(rq.r.Context(), rq.params["taskId"])
	if errors.Is(err, ErrNotFound) {
		return nil, apiErrorf(codeResourceNotFound, notFound, rq.params["taskId"])
	} else if err != nil {
		return nil, err
	}
	if err := rq.authorize(taskAuthParams(rec)); err != nil {
		return nil, err
	}
	if !mustTime(rec.Task.Deadline).After(rq.now) {
		return nil, apiErrorf(codeRequestConflict, pastDeadline, rec.TaskID, rec.Task.Deadline)
	}
	return rec, nil
}

// scheduleTask gives an unscheduled task its first run, whatever its
// dependencies; other tasks are answered as they are.
func (q *Queue) scheduleTask(w http.ResponseWriter, rq *apiRequest) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	rec, err := q.taskForChange(rq, "taskId `%s` not found. Are you sure it exists?", "Task `%s` can't be scheduled past its deadline at %s.")
	if err != nil {
		return err
	}
	if len(rec.Runs) == 0 {
		t := q.begin(rq.r.Context())
		q.scheduleLocked(t, rec, rq.now)
		if err := t.commit(); err != nil {
			return err
		}
		q.log.Info("task scheduled", "taskId", rec.TaskID)
	}
	q.reply(w, http.StatusOK, statusResponse{Status: rec.status()})
	return nil
}

// maxRuns is how many runs a task may have; rerunTask refuses beyond it.
const maxRuns = 50

// rerunTask adds a new pending run to a resolved (or unscheduled) task and
// resets its retries; pending and running tasks are answered as they are.
func (q *Queue) rerunTask(w http.ResponseWriter, rq *apiRequest) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	rec, err := q.taskForChange(rq, "`%s` does not correspond to a task that exists.\nAre you sure this task has been submitted before?", "Task `%s` can't be rescheduled past its deadline of %s.")
	if err != nil {
		return err
	}
	if st := rec.taskState(); st != statePending && st != stateRunning {
		if len(rec.Runs) >= maxRuns {
			return apiErrorf(codeRequestConflict, "Maximum number of runs reached (%d).", maxRuns)
		}
		runID := len(rec.Runs)
		rec.Runs = append(rec.Runs, RunRecord{RunID: runID, State: statePending, ReasonCreated: reasonRerun, Scheduled: rq.now})
		rec.RetriesLeft = rec.Task.Retries
		t := q.begin(rq.r.Context())
		t.put(rec)
		t.pending = append(t.pending, rec.TaskID)
		t.msgOf(func() Message { return msgTaskPending(rec, runID) })
		if err := t.commit(); err != nil {
			return err
		}
		q.log.Info("task rerun", "taskId", rec.TaskID, "runId", runID)
	}
	q.reply(w, http.StatusOK, statusResponse{Status: rec.status()})
	return nil
}

// cancelTask resolves the current run exception/canceled (adding a run if
// the task has none); resolved tasks are left as they are.
func (q *Queue) cancelTask(w http.ResponseWriter, rq *apiRequest) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	rec, err := q.taskForChange(rq, "Task `%s` not found. Are you sure it was created?", "Task `%s` can't be canceled past its deadline of %s.")
	if err != nil {
		return err
	}
	if rec.unresolved() {
		t := q.begin(rq.r.Context())
		runID := q.resolveCurrentLocked(rec, reasonCanceled, rq.now)
		t.put(rec)
		if err := q.afterResolveLocked(t, rec, runID, false, rq.now); err != nil {
			return err
		}
		if err := t.commit(); err != nil {
			return err
		}
		q.log.Info("task canceled", "taskId", rec.TaskID)
	}
	q.reply(w, http.StatusOK, statusResponse{Status: rec.status()})
	return nil
}

// resolveCurrentLocked resolves the task's pending or running run as
// exception with reason, without retry, and returns its runId; a task
// without runs gets one (reasonCreated "exception") to carry the resolution.
func (q *Queue) resolveCurrentLocked(rec *TaskRecord, reason string, now time.Time) int {
	n := len(rec.Runs)
	if n == 0 || (rec.Runs[n-1].State != statePending && rec.Runs[n-1].State != stateRunning) {
		rec.Runs = append(rec.Runs, RunRecord{RunID: n, State: stateException, ReasonCreated: reasonCreatedException, Scheduled: now})
		n++
	}
	r := &rec.Runs[n-1]
	r.State, r.ReasonResolved, r.Resolved = stateException, reason, now
	return n - 1
}

// Task groups.

// pageParams reads the limit and continuationToken query parameters of a
// listing: at most 1000 per page; the token names the last key of the
// previous page.
func pageParams(rq *apiRequest) (limit int, after string, err error) {
	query := rq.r.URL.Query()
	limit = 1000
	if s := query.Get("limit"); s != "" {
		n, convErr := strconv.Atoi(s)
		if convErr != nil || n < 1 {
			return 0, "", apiErrorf(codeInvalidRequestArguments, "limit %q must be a positive integer", s)
		}
		limit = min(n, 1000)
	}
	if tok := query.Get("continuationToken"); tok != "" {
		b, decErr := base64.RawURLEncoding.DecodeString(tok)
		if decErr != nil || len(b) == 0 {
			return 0, "", apiErrorf(codeInvalidRequestArguments, "continuationToken %q is not valid", tok)
		}
		after = string(b)
	}
	return limit, after, nil
}

func pageToken(last string) string { return base64.RawURLEncoding.EncodeToString([]byte(last)) }

type taskAndStatus struct {
	Status taskStatus     `json:"status"`
	Task   TaskDefinition `json:"task"`
}

// taskPage loads one page of the sorted ids after `after`.
func (q *Queue) taskPage(rq *apiRequest, ids []string) ([]taskAndStatus, string, error) {
	limit, after, err := pageParams(rq)
	if err != nil {
		return nil, "", err
	}
	start, _ := slices.BinarySearch(ids, after)
	if start < len(ids) && ids[start] == after {
		start++
	}
	page := ids[start:min(len(ids), start+limit)]
	out := make([]taskAndStatus, 0, len(page))
	for _, id := range page {
		rec, err := q.store.Get(rq.r.Context(), id)
		if err != nil {
			return nil, "", err
		}
		out = append(out, taskAndStatus{Status: rec.status(), Task: rec.Task})
	}
	token := ""
	if start+limit < len(ids) {
		token = pageToken(page[len(page)-1])
	}
	return out, token, nil
}

type taskGroupJSON struct {
	TaskGroupID string `json:"taskGroupId"`
	SchedulerID string `json:"schedulerId"`
	Expires     string `json:"expires"`
}

// group returns a copy of a task group's index entry.
func (q *Queue) group(id string) (taskGroup, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	g, ok := q.groups[id]
	if !ok {
		return taskGroup{}, apiErrorf(codeResourceNotFound, "No task-group with taskGroupId: `%s`", id)
	}
	c := *g
	c.taskIDs = slices.Clone(g.taskIDs)
	return c, nil
}

func (q *Queue) listTaskGroup(w http.ResponseWriter, rq *apiRequest) error {
	id := rq.params["taskGroupId"]
	g, err := q.group(id)
	if err != nil {
		return err
	}
	tasks, token, err := q.taskPage(rq, g.taskIDs)
	if err != nil {
		return err
	}
	q.reply(w, http.StatusOK, struct {
		taskGroupJSON
		Tasks             []taskAndStatus `json:"tasks"`
		ContinuationToken string          `json:"continuationToken,omitempty"`
	}{taskGroupJSON{id, g.schedulerID, formatTime(g.expires)}, tasks, token})
	return nil
}

func (q *Queue) getTaskGroup(w http.ResponseWriter, rq *apiRequest) error {
	id := rq.params["taskGroupId"]
	g, err := q.group(id)
	if err != nil {
		return err
	}
	q.reply(w, http.StatusOK, taskGroupJSON{id, g.schedulerID, formatTime(g.expires)})
	return nil
}

func (q *Queue) listDependentTasks(w http.ResponseWriter, rq *apiRequest) error {
	if _, err := q.loadTask(rq); err != nil {
		return err
	}
	q.mu.Lock()
	ids := slices.Clone(q.dependents[rq.params["taskId"]])
	q.mu.Unlock()
	slices.Sort(ids)
	ids = slices.Compact(ids)
	tasks, token, err := q.taskPage(rq, ids)
	if err != nil {
		return err
	}
	q.reply(w, http.StatusOK, struct {
		TaskID            string          `json:"taskId"`
		Tasks             []taskAndStatus `json:"tasks"`
		ContinuationToken string          `json:"continuationToken,omitempty"`
	}{rq.params["taskId"], tasks, token})
	return nil
}
