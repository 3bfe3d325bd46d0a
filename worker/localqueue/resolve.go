package localqueue

import (
	"context"
	"fmt"
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
	t := q.begin(rq.r.Context())
	t.put(rec)
	retried := state == stateException && q.retryLocked(t, rec, exceptionReasons[reason], rq.now)
	if err := q.afterResolveLocked(t, rec, runID, retried, rq.now); err != nil {
		return err
	}
	if state == stateCompleted {
		if err := q.indexCompletedLocked(t, rec); err != nil {
			return err
		}
	}
	if err := t.commit(); err != nil {
		return err
	}
	q.log.Info("run resolved", "taskId", rec.TaskID, "runId", runID, "state", state, "reason", reason, "retried", retried)
	q.reply(w, http.StatusOK, statusResponse{Status: rec.status()})
	return nil
}

// retryLocked adds a pending run created for reasonCreated, if that is a
// retry reason and the task has retries left.
func (q *Queue) retryLocked(t *tx, rec *TaskRecord, reasonCreated string, now time.Time) bool {
	if reasonCreated == "" || rec.RetriesLeft <= 0 {
		return false
	}
	rec.RetriesLeft--
	rec.Runs = append(rec.Runs, RunRecord{RunID: len(rec.Runs), State: statePending, ReasonCreated: reasonCreated, Scheduled: now})
	t.pending = append(t.pending, rec.TaskID)
	return true
}

// afterResolveLocked adds to t what follows the resolution of run runID:
// the message announcing it, then either the pending message of the retry
// run, or (the task is resolved) the scheduling of the dependent tasks it
// unblocks and, when it was the last unresolved task of its group, the
// task-group-resolved message.
func (q *Queue) afterResolveLocked(t *tx, rec *TaskRecord, runID int, retried bool, now time.Time) error {
	t.msgOf(func() Message { return msgResolved(rec, runID) })
	if retried {
		t.msgOf(func() Message { return msgTaskPending(rec, len(rec.Runs)-1) })
		return nil
	}
	for _, id := range q.dependents[rec.TaskID] {
		dep, err := t.get(id)
		if err != nil {
			return fmt.Errorf("load dependent task %s: %w", id, err)
		}
		if len(dep.Runs) > 0 || !mustTime(dep.Task.Deadline).After(now) {
			continue
		}
		ready, err := q.dependenciesSatisfied(t, dep)
		if err != nil {
			return fmt.Errorf("dependencies of %s: %w", id, err)
		}
		if ready {
			q.scheduleLocked(t, dep, now)
			q.log.Info("task scheduled: dependencies resolved", "taskId", id)
		}
	}
	groupID := rec.Task.TaskGroupID
	g := q.groups[groupID]
	for _, id := range g.taskIDs {
		if _, active := q.active[id]; active && id != rec.TaskID {
			if other, ok := t.recs[id]; !ok || other.unresolved() {
				return nil
			}
		}
	}
	expires := g.expires
	if exp := mustTime(rec.Task.Expires); exp.After(expires) {
		expires = exp
	}
	t.msgOf(func() Message { return msgTaskGroupResolved(groupID, g.schedulerID, expires) })
	return nil
}

// deadlineLocked resolves an unresolved task `deadline-exceeded` and
// commits it.
func (q *Queue) deadlineLocked(ctx context.Context, rec *TaskRecord, now time.Time) error {
	t := q.begin(ctx)
	runID := q.resolveCurrentLocked(rec, reasonDeadlineExceeded, now)
	t.put(rec)
	if err := q.afterResolveLocked(t, rec, runID, false, now); err != nil {
		return err
	}
	if err := t.commit(); err != nil {
		return err
	}
	q.log.Info("task deadline exceeded", "taskId", rec.TaskID, "runId", runID)
	return nil
}

// expire resolves runs whose claim expired (claim-expired, retried while
// retries remain) and tasks past their deadline (deadline-exceeded, never
// retried).
func (q *Queue) expire(ctx context.Context) {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.clock()
	var due []string
	for id, a := range q.active {
		if !a.deadline.After(now) || (!a.takenUntil.IsZero() && now.After(a.takenUntil)) {
			due = append(due, id)
		}
	}
	slices.Sort(due)
	for _, taskID := range due {
		if err := q.expireTaskLocked(ctx, taskID, now); err != nil {
			if !isClosed(err) {
				q.log.Error("expiry", "taskId", taskID, "err", err)
			}
			return
		}
	}
}

func (q *Queue) expireTaskLocked(ctx context.Context, taskID string, now time.Time) error {
	rec, err := q.store.Get(ctx, taskID)
	if err != nil {
		return err
	}
	if !rec.unresolved() {
		q.indexLocked(rec, false)
		return nil
	}
	if !mustTime(rec.Task.Deadline).After(now) {
		return q.deadlineLocked(ctx, rec, now)
	}
	n := len(rec.Runs)
	if n == 0 || rec.Runs[n-1].State != stateRunning || !now.After(rec.Runs[n-1].TakenUntil) {
		q.indexLocked(rec, false)
		return nil
	}
	r := &rec.Runs[n-1]
	r.State, r.ReasonResolved, r.Resolved = stateException, reasonClaimExpired, now
	t := q.begin(ctx)
	t.put(rec)
	retried := q.retryLocked(t, rec, reasonRetry, now)
	if err := q.afterResolveLocked(t, rec, n-1, retried, now); err != nil {
		return err
	}
	if err := t.commit(); err != nil {
		return err
	}
	q.log.Info("claim expired", "taskId", taskID, "runId", n-1, "retried", retried)
	return nil
}
