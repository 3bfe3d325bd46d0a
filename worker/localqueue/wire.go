package localqueue

import (
	"encoding/json"
	"time"
)

// Run and task states, and the reasons the queue records.
const (
	statePending     = "pending"
	stateRunning     = "running"
	stateCompleted   = "completed"
	stateFailed      = "failed"
	stateException   = "exception"
	stateUnscheduled = "unscheduled"

	reasonScheduled        = "scheduled"
	reasonRetry            = "retry"
	reasonTaskRetry        = "task-retry"
	reasonRerun            = "rerun"
	reasonCreatedException = "exception"

	reasonClaimExpired     = "claim-expired"
	reasonDeadlineExceeded = "deadline-exceeded"
	reasonCanceled         = "canceled"
	reasonWorkerShutdown   = "worker-shutdown"
	reasonIntermittentTask = "intermittent-task"
)

// tcTimeLayout is how Taskcluster writes date-times: UTC, milliseconds, Z.
const tcTimeLayout = "2006-01-02T15:04:05.000Z"

func formatTime(t time.Time) string { return t.UTC().Format(tcTimeLayout) }

// parseTime reads an RFC 3339 date-time, as the schemas' `date-time` format.
func parseTime(s string) (time.Time, error) {
	return time.Parse(time.RFC3339Nano, s)
}

// mustTime parses a date-time the queue wrote itself.
func mustTime(s string) time.Time {
	t, err := parseTime(s)
	if err != nil {
		panic("localqueue: stored date-time " + s + " does not parse: " + err.Error())
	}
	return t
}

// TaskDefinition is a task as the `task` endpoint serves it (task.json).
// Dates are stored in the Taskcluster form, `2026-11-22T05:00:00.000Z`.
type TaskDefinition struct {
	ProvisionerID string            `json:"provisionerId"`
	WorkerType    string            `json:"workerType"`
	TaskQueueID   string            `json:"taskQueueId"`
	SchedulerID   string            `json:"schedulerId"`
	ProjectID     string            `json:"projectId"`
	TaskGroupID   string            `json:"taskGroupId"`
	Dependencies  []string          `json:"dependencies"`
	Requires      string            `json:"requires"`
	Routes        []string          `json:"routes"`
	Priority      string            `json:"priority"`
	Retries       int               `json:"retries"`
	Created       string            `json:"created"`
	Deadline      string            `json:"deadline"`
	Expires       string            `json:"expires"`
	Scopes        []string          `json:"scopes"`
	Payload       json.RawMessage   `json:"payload"`
	Metadata      TaskMetadata      `json:"metadata"`
	Tags          map[string]string `json:"tags"`
	Extra         json.RawMessage   `json:"extra"`
}

// TaskMetadata is the task's required human-readable metadata.
type TaskMetadata struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Owner       string `json:"owner"`
	Source      string `json:"source"`
}

// taskStatus is task-status.json.
type taskStatus struct {
	TaskID        string    `json:"taskId"`
	ProvisionerID string    `json:"provisionerId"`
	WorkerType    string    `json:"workerType"`
	TaskQueueID   string    `json:"taskQueueId"`
	SchedulerID   string    `json:"schedulerId"`
	ProjectID     string    `json:"projectId"`
	TaskGroupID   string    `json:"taskGroupId"`
	Priority      string    `json:"priority"`
	Deadline      string    `json:"deadline"`
	Expires       string    `json:"expires"`
	RetriesLeft   int       `json:"retriesLeft"`
	State         string    `json:"state"`
	Runs          []runJSON `json:"runs"`
}

type runJSON struct {
	RunID          int    `json:"runId"`
	State          string `json:"state"`
	ReasonCreated  string `json:"reasonCreated"`
	ReasonResolved string `json:"reasonResolved,omitempty"`
	WorkerGroup    string `json:"workerGroup,omitempty"`
	WorkerID       string `json:"workerId,omitempty"`
	TakenUntil     string `json:"takenUntil,omitempty"`
	Scheduled      string `json:"scheduled"`
	Started        string `json:"started,omitempty"`
	Resolved       string `json:"resolved,omitempty"`
}

type statusResponse struct {
	Status taskStatus `json:"status"`
}

type credentialsJSON struct {
	ClientID    string `json:"clientId"`
	AccessToken string `json:"accessToken"`
	Certificate string `json:"certificate"`
}

type claimJSON struct {
	Status      taskStatus      `json:"status"`
	RunID       int             `json:"runId"`
	WorkerGroup string          `json:"workerGroup"`
	WorkerID    string          `json:"workerId"`
	TakenUntil  string          `json:"takenUntil"`
	Task        TaskDefinition  `json:"task"`
	Credentials credentialsJSON `json:"credentials"`
}

type claimWorkResponse struct {
	Tasks []claimJSON `json:"tasks"`
}

type reclaimResponse struct {
	Status      taskStatus      `json:"status"`
	RunID       int             `json:"runId"`
	WorkerGroup string          `json:"workerGroup"`
	WorkerID    string          `json:"workerId"`
	TakenUntil  string          `json:"takenUntil"`
	Credentials credentialsJSON `json:"credentials"`
}

type artifactJSON struct {
	StorageType   string `json:"storageType"`
	Name          string `json:"name"`
	Expires       string `json:"expires"`
	ContentType   string `json:"contentType"`
	ContentLength *int64 `json:"contentLength,omitempty"`
}

type listArtifactsResponse struct {
	Artifacts         []artifactJSON `json:"artifacts"`
	ContinuationToken string         `json:"continuationToken,omitempty"`
}

// taskState is the task's state: that of its last run.
func (rec *TaskRecord) taskState() string {
	if len(rec.Runs) == 0 {
		return stateUnscheduled
	}
	return rec.Runs[len(rec.Runs)-1].State
}

// unresolved reports whether the task still has work ahead of it.
func (rec *TaskRecord) unresolved() bool {
	switch rec.taskState() {
	case stateUnscheduled, statePending, stateRunning:
		return true
	}
	return false
}

func (rec *TaskRecord) status() taskStatus {
	d := &rec.Task
	s := taskStatus{
		TaskID:        rec.TaskID,
		ProvisionerID: d.ProvisionerID,
		WorkerType:    d.WorkerType,
		TaskQueueID:   d.TaskQueueID,
		SchedulerID:   d.SchedulerID,
		ProjectID:     d.ProjectID,
		TaskGroupID:   d.TaskGroupID,
		Priority:      d.Priority,
		Deadline:      d.Deadline,
		Expires:       d.Expires,
		RetriesLeft:   rec.RetriesLeft,
		State:         rec.taskState(),
		Runs:          make([]runJSON, len(rec.Runs)),
	}
	for i, r := range rec.Runs {
		j := runJSON{
			RunID:          r.RunID,
			State:          r.State,
			ReasonCreated:  r.ReasonCreated,
			ReasonResolved: r.ReasonResolved,
			WorkerGroup:    r.WorkerGroup,
			WorkerID:       r.WorkerID,
			Scheduled:      formatTime(r.Scheduled),
		}
		if !r.TakenUntil.IsZero() {
			j.TakenUntil = formatTime(r.TakenUntil)
		}
		if !r.Started.IsZero() {
			j.Started = formatTime(r.Started)
		}
		if !r.Resolved.IsZero() {
			j.Resolved = formatTime(r.Resolved)
		}
		s.Runs[i] = j
	}
	return s
}

func artifactToJSON(a ArtifactRecord) artifactJSON {
	return artifactJSON{StorageType: a.StorageType, Name: a.Name, Expires: formatTime(a.Expires), ContentType: a.ContentType, ContentLength: a.ContentLength}
}
