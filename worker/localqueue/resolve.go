package localqueue

import (
	"context"
	"net/http"
	"slices"
	"time"
)

const taskExceptionSchema = "/schemas/queue/v1/task-exception-request.json#"

// exceptionReasons are the reasons a worker may report, and the
// reasonCreated of the retry run each one causes ("" for none).
var exceptionReasons = map[string]string{
	reasonWorkerShutdown:   reasonRetry,
	reasonIntermittentTask: reasonTaskRetry,
	"malformed-payload":    "",
	"resource-unavailable": "",
	"internal-error":       "",
}

func (q *Queue) reportCompleted(w http.ResponseWriter, rq *apiRequest) error {
	return q.resolveRun(w, rq, stateCompleted, stateCompleted)
}

func (q *Queue) reportFailed(w http.ResponseWriter, rq *apiRequest) error {
	return q.resolveRun(w, rq, stateFailed, stateFailed)
}

func (q *Queue) reportException(w http.ResponseWriter, rq *apiRequest) error {
	var in struct {
		Reason *string `json:"reason"`
	}
	if err := decodeBody(rq, taskExceptionSchema, &in); err != nil {
		return err
	}
	if in.Reason == nil {
		return invalidInput(taskExceptionSchema, "reason is required")
	}
	if _, ok := exceptionReasons[*in.Reason]; !ok {
		reasons := make([]string, 0, len(exceptionReasons))
		for r := range exceptionReasons {
			reasons = append(reasons, r)
		}
		slices.Sort(reasons)
		return invalidInput(taskExceptionSchema, "reason must be one of "+joinQuoted(reasons))
	}
	return q.resolveRun(w, rq, stateException, *in.Reason)
}

func joinQuoted(s []string) string {
	out := ""
	for i, v := range s {
		if i > 0 {
			out += ", "
		}
		out += "`" + v + "`"
	}
	return out
}

// resolveRun resolves a running run as state with reason. Repeating a
// resolution the run already has is answered with the current status, as
// the real queue does; any other resolution of a run that is not running
// conflicts.
func (q *Queue) resolveRun(w http.ResponseWriter, rq *apiRequest, state, reason string) error {
	ctx := rq.r.Context()
	q.mu.Lock()
	defer q.mu.Unlock()
	rec, runID, err := q.loadRun(rq)
	if err != nil {
		return err
	}
	r := &rec.Runs[runID]
	if r.State == state && r.ReasonResolved == reason {
		q.reply(w, http.StatusOK, statusResponse{Status: rec.status()})
		return nil
	}
	if r.State != stateRunning {
		return apiErrorf(codeRequestConflict, "Run %d on task `%s` is resolved or not running.", runID, rec.TaskID)
	}
	r.State, r.ReasonResolved, r.Resolved = state, reason, rq.now
	retried := state == stateException && q.retryLocked(rec, exceptionReasons[reason], rq.now)
	if err := q.store.Update(ctx, rec); err != nil {
		return err
	}
	q.afterChangeLocked(rec, retried)
	q.log.Info("run resolved", "taskId", rec.TaskID, "runId", runID, "state", state, "reason", reason, "retried", retried)
	q.reply(w, http.StatusOK, statusResponse{Status: rec.status()})
	return nil
}

// retryLocked adds a pending run created for reasonCreated, if that is a
// retry reason and the task has retries left.
func (q *Queue) retryLocked(rec *TaskRecord, reasonCreated string, now time.Time) bool {
	if reasonCreated == "" || rec.RetriesLeft <= 0 {
		return false
	}
	rec.RetriesLeft--
	rec.Runs = append(rec.Runs, RunRecord{RunID: len(rec.Runs), State: statePending, ReasonCreated: reasonCreated, Scheduled: now})
	return true
}

// afterChangeLocked updates the indexes once rec is stored: a new pending
// run becomes claimable, a resolved task leaves the active set.
func (q *Queue) afterChangeLocked(rec *TaskRecord, newPendingRun bool) {
	if newPendingRun {
		q.enqueueLocked(rec)
	}
	if !rec.unresolved() {
		delete(q.active, rec.TaskID)
	}
}

// expire resolves runs whose claim expired (claim-expired, retried while
// retries remain) and tasks past their deadline (deadline-exceeded, never
// retried).
func (q *Queue) expire(ctx context.Context) {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.clock()
	for taskID := range q.active {
		rec, err := q.store.Get(ctx, taskID)
		if err != nil {
			q.log.Error("expiry: load task", "taskId", taskID, "err", err)
			continue
		}
		if !rec.unresolved() {
			delete(q.active, taskID)
			continue
		}
		retried := false
		n := len(rec.Runs)
		switch {
		case !mustTime(rec.Task.Deadline).After(now):
			q.resolveCurrentLocked(rec, reasonDeadlineExceeded, now)
			q.log.Info("task deadline exceeded", "taskId", taskID)
		case n > 0 && rec.Runs[n-1].State == stateRunning && now.After(rec.Runs[n-1].TakenUntil):
			r := &rec.Runs[n-1]
			r.State, r.ReasonResolved, r.Resolved = stateException, reasonClaimExpired, now
			retried = q.retryLocked(rec, reasonRetry, now)
			q.log.Info("claim expired", "taskId", taskID, "runId", n-1, "retried", retried)
		default:
			continue
		}
		if err := q.store.Update(ctx, rec); err != nil {
			q.log.Error("expiry: store task", "taskId", taskID, "err", err)
			continue
		}
		q.afterChangeLocked(rec, retried)
	}
}
