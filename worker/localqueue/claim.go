package localqueue

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"go.dockerworker.dev/docker-worker/worker/localqueue/internal/hawkserver"
)

const (
	claimWorkSchema = "/schemas/queue/v1/claim-work-request.json#"
	maxClaimTasks   = 32
)

// taskQueue is the pending work of one taskQueueId: run references in
// claim order (by priority, then first come first served), and the channel
// waiting claims sleep on. Guarded by Queue.mu.
type taskQueue struct {
	byPriority [7][]pendingRef
	// wake is closed (and replaced by nil) when work is added.
	wake chan struct{}
}

type pendingRef struct {
	taskID string
	runID  int
}

// enqueueLocked makes the task's last (pending) run claimable and wakes
// the claims waiting on its queue.
func (q *Queue) enqueueLocked(rec *TaskRecord) {
	tq := q.taskQueueLocked(rec.Task.TaskQueueID)
	p := slices.Index(priorities, rec.Task.Priority)
	if p < 0 {
		p = len(priorities) - 1
	}
	tq.byPriority[p] = append(tq.byPriority[p], pendingRef{rec.TaskID, len(rec.Runs) - 1})
	if tq.wake != nil {
		close(tq.wake)
		tq.wake = nil
	}
}

func (q *Queue) taskQueueLocked(id string) *taskQueue {
	tq, ok := q.queues[id]
	if !ok {
		tq = &taskQueue{}
		q.queues[id] = tq
	}
	return tq
}

type claimWorkRequest struct {
	Tasks       *int    `json:"tasks"`
	WorkerGroup *string `json:"workerGroup"`
	WorkerID    *string `json:"workerId"`
}

func checkWorkerIDs(schema string, group, id *string) error {
	var problems []string
	for name, v := range map[string]*string{"workerGroup": group, "workerId": id} {
		switch {
		case v == nil:
			problems = append(problems, name+" is required")
		case len(*v) < 1 || len(*v) > 38 || !identifierPattern.MatchString(*v):
			problems = append(problems, fmt.Sprintf("%s %q must be 1 to 38 of [a-zA-Z0-9-_]", name, *v))
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return invalidInput(schema, problems...)
	}
	return nil
}

// claimWork hands out up to `tasks` pending runs of the queue, waiting up
// to ClaimWait for the first one to appear.
func (q *Queue) claimWork(w http.ResponseWriter, rq *apiRequest) error {
	var in claimWorkRequest
	if err := decodeBody(rq, claimWorkSchema, &in); err != nil {
		return err
	}
	if err := checkWorkerIDs(claimWorkSchema, in.WorkerGroup, in.WorkerID); err != nil {
		return err
	}
	if in.Tasks == nil || *in.Tasks < 1 || *in.Tasks > maxClaimTasks {
		return invalidInput(claimWorkSchema, fmt.Sprintf("tasks must be an integer from 1 to %d", maxClaimTasks))
	}
	if err := rq.authorize(map[string]any{"workerGroup": *in.WorkerGroup, "workerId": *in.WorkerID}); err != nil {
		return err
	}
	queueID := rq.params["taskQueueId"]
	ctx := rq.r.Context()
	timer := time.NewTimer(q.claimWait)
	defer timer.Stop()
	for {
		q.mu.Lock()
		claims, err := q.claimLocked(ctx, queueID, *in.WorkerGroup, *in.WorkerID, *in.Tasks)
		if err != nil || len(claims) > 0 {
			q.mu.Unlock()
			if err != nil {
				return err
			}
			q.reply(w, http.StatusOK, claimWorkResponse{Tasks: claims})
			return nil
		}
		tq := q.taskQueueLocked(queueID)
		if tq.wake == nil {
			tq.wake = make(chan struct{})
		}
		wake := tq.wake
		q.mu.Unlock()

		select {
		case <-wake:
		case <-timer.C:
			q.reply(w, http.StatusOK, claimWorkResponse{Tasks: []claimJSON{}})
			return nil
		case <-ctx.Done():
			q.reply(w, http.StatusOK, claimWorkResponse{Tasks: []claimJSON{}})
			return nil
		}
	}
}

// claimLocked claims up to n pending runs of the queue, dropping stale
// references (runs resolved meanwhile, tasks past their deadline) on the
// way. Each claim is committed on its own, so a failure leaves the claims
// made so far in place.
func (q *Queue) claimLocked(ctx context.Context, queueID, workerGroup, workerID string, n int) ([]claimJSON, error) {
	tq, ok := q.queues[queueID]
	if !ok {
		return nil, nil
	}
	now := q.clock()
	var out []claimJSON
	for p := range tq.byPriority {
		for len(out) < n && len(tq.byPriority[p]) > 0 {
			ref := tq.byPriority[p][0]
			rec, err := q.store.Get(ctx, ref.taskID)
			if err != nil {
				return out, fmt.Errorf("claim: load pending task %s: %w", ref.taskID, err)
			}
			tq.byPriority[p] = tq.byPriority[p][1:]
			if ref.runID != len(rec.Runs)-1 || rec.Runs[ref.runID].State != statePending || !mustTime(rec.Task.Deadline).After(now) {
				continue
			}
			r := &rec.Runs[ref.runID]
			r.State, r.WorkerGroup, r.WorkerID = stateRunning, workerGroup, workerID
			r.Started, r.TakenUntil = now, now.Add(q.claimTimeout)
			creds, err := q.runCredentials(rec, ref.runID, now)
			if err == nil {
				t := q.begin(ctx)
				t.put(rec)
				t.msgOf(func() Message { return msgTaskRunning(rec, ref.runID) })
				err = t.commit()
			}
			if err != nil {
				tq.byPriority[p] = append([]pendingRef{ref}, tq.byPriority[p]...)
				return out, err
			}
			q.log.Info("task claimed", "taskId", rec.TaskID, "runId", ref.runID, "workerGroup", workerGroup, "workerId", workerID)
			out = append(out, claimJSON{
				Status:      rec.status(),
				RunID:       ref.runID,
				WorkerGroup: workerGroup,
				WorkerID:    workerID,
				TakenUntil:  formatTime(r.TakenUntil),
				Task:        rec.Task,
				Credentials: creds,
			})
		}
	}
	return out, nil
}

// runCredentials issues the temporary credentials of a claimed run: named
// after the run and its worker, valid until takenUntil, with the run's
// scopes and the task's.
func (q *Queue) runCredentials(rec *TaskRecord, runID int, now time.Time) (credentialsJSON, error) {
	r := rec.Runs[runID]
	ms := r.TakenUntil.UnixMilli()
	clientID := fmt.Sprintf("task-client/%s/%d/on/%s/%s/until/%d.%03d", rec.TaskID, runID, r.WorkerGroup, r.WorkerID, ms/1000, ms%1000)
	scopes := append([]string{
		fmt.Sprintf("queue:reclaim-task:%s/%d", rec.TaskID, runID),
		fmt.Sprintf("queue:resolve-task:%s/%d", rec.TaskID, runID),
		fmt.Sprintf("queue:create-artifact:%s/%d", rec.TaskID, runID),
	}, rec.Task.Scopes...)
	c, err := hawkserver.IssueTemporaryCredentials(issuerClientID, q.issuerToken, clientID, scopes, now, r.TakenUntil)
	if err != nil {
		return credentialsJSON{}, fmt.Errorf("issue credentials for %s/%d: %w", rec.TaskID, runID, err)
	}
	return credentialsJSON{ClientID: c.ClientID, AccessToken: c.AccessToken, Certificate: c.Certificate}, nil
}

// loadRun reads the task and checks the run exists.
func (q *Queue) loadRun(rq *apiRequest) (*TaskRecord, int, error) {
	rec, err := q.loadTask(rq)
	if err != nil {
		return nil, 0, err
	}
	runID, err := strconv.Atoi(rq.params["runId"])
	if err != nil || runID >= len(rec.Runs) {
		return nil, 0, apiErrorf(codeResourceNotFound, "Run %s not found on task `%s`.", rq.params["runId"], rec.TaskID)
	}
	return rec, runID, nil
}

// reclaimTask extends the claim of a running run and issues new credentials.
func (q *Queue) reclaimTask(w http.ResponseWriter, rq *apiRequest) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	rec, runID, err := q.loadRun(rq)
	if err != nil {
		return err
	}
	if !mustTime(rec.Task.Deadline).After(rq.now) {
		if rec.unresolved() {
			if err := q.deadlineLocked(rq.r.Context(), rec, rq.now); err != nil {
				return err
			}
		}
		return apiErrorf(codeRequestConflict, "Task `%s` can't be reclaimed past its deadline of %s.", rec.TaskID, rec.Task.Deadline)
	}
	r := &rec.Runs[runID]
	if runID != len(rec.Runs)-1 || r.State != stateRunning {
		return apiErrorf(codeRequestConflict, "Run %d on task `%s` is resolved or not running.", runID, rec.TaskID)
	}
	r.TakenUntil = rq.now.Add(q.claimTimeout)
	creds, err := q.runCredentials(rec, runID, rq.now)
	if err != nil {
		return err
	}
	t := q.begin(rq.r.Context())
	t.put(rec)
	if err := t.commit(); err != nil {
		return err
	}
	q.reply(w, http.StatusOK, reclaimResponse{
		Status:      rec.status(),
		RunID:       runID,
		WorkerGroup: r.WorkerGroup,
		WorkerID:    r.WorkerID,
		TakenUntil:  formatTime(r.TakenUntil),
		Credentials: creds,
	})
	return nil
}
