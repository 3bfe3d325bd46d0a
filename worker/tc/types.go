package tc

import (
	"encoding/json"
	"fmt"
	"time"
)

// Times decode from any RFC 3339 form, including the "+00:00" offsets the
// queue sends for takenUntil; optional times use omitzero so they are absent
// rather than year 1 when marshalled.

// ClaimWorkRequest is the body of claimWork (claim-work-request.json).
type ClaimWorkRequest struct {
	Tasks       int    `json:"tasks"`
	WorkerGroup string `json:"workerGroup"`
	WorkerID    string `json:"workerId"`
}

// ClaimWorkResponse is the answer to claimWork (claim-work-response.json).
type ClaimWorkResponse struct {
	Tasks []TaskClaim `json:"tasks"`
}

// TaskClaim is one claimed run: its status, definition and the temporary
// credentials to use for everything done on the run's behalf.
type TaskClaim struct {
	Status      TaskStatus     `json:"status"`
	RunID       int            `json:"runId"`
	WorkerGroup string         `json:"workerGroup"`
	WorkerID    string         `json:"workerId"`
	TakenUntil  time.Time      `json:"takenUntil"`
	Task        TaskDefinition `json:"task"`
	Credentials Credentials    `json:"credentials"`
}

// TaskReclaimResponse is the answer to reclaimTask (task-reclaim-response.json).
type TaskReclaimResponse struct {
	Status      TaskStatus  `json:"status"`
	RunID       int         `json:"runId"`
	WorkerGroup string      `json:"workerGroup"`
	WorkerID    string      `json:"workerId"`
	TakenUntil  time.Time   `json:"takenUntil"`
	Credentials Credentials `json:"credentials"`
}

// TaskStatusResponse wraps a task status (task-status-response.json).
type TaskStatusResponse struct {
	Status TaskStatus `json:"status"`
}

// TaskStatus is the queue's view of a task (task-status.json).
type TaskStatus struct {
	TaskID        string    `json:"taskId"`
	ProvisionerID string    `json:"provisionerId"`
	WorkerType    string    `json:"workerType"`
	TaskQueueID   string    `json:"taskQueueId"`
	SchedulerID   string    `json:"schedulerId"`
	ProjectID     string    `json:"projectId"`
	TaskGroupID   string    `json:"taskGroupId"`
	Priority      string    `json:"priority,omitempty"`
	Deadline      time.Time `json:"deadline"`
	Expires       time.Time `json:"expires"`
	RetriesLeft   int       `json:"retriesLeft"`
	State         string    `json:"state"`
	Runs          []Run     `json:"runs"`
}

// Run is one entry of TaskStatus.Runs; Runs[i].RunID == i.
type Run struct {
	RunID          int       `json:"runId"`
	State          string    `json:"state"`
	ReasonCreated  string    `json:"reasonCreated"`
	ReasonResolved string    `json:"reasonResolved,omitempty"`
	WorkerGroup    string    `json:"workerGroup,omitempty"`
	WorkerID       string    `json:"workerId,omitempty"`
	TakenUntil     time.Time `json:"takenUntil,omitzero"`
	Scheduled      time.Time `json:"scheduled"`
	Started        time.Time `json:"started,omitzero"`
	Resolved       time.Time `json:"resolved,omitzero"`
}

// TaskRun names one run of a task (task-run.json).
type TaskRun struct {
	TaskID string `json:"taskId"`
	RunID  int    `json:"runId"`
}

// Task states and run states (task-status.json).
const (
	StateUnscheduled = "unscheduled"
	StatePending     = "pending"
	StateRunning     = "running"
	StateCompleted   = "completed"
	StateFailed      = "failed"
	StateException   = "exception"
)

// Reasons a worker may give to ReportException (task-exception-request.json).
const (
	ReasonWorkerShutdown      = "worker-shutdown"
	ReasonMalformedPayload    = "malformed-payload"
	ReasonResourceUnavailable = "resource-unavailable"
	ReasonInternalError       = "internal-error"
	ReasonIntermittentTask    = "intermittent-task"
)

func validExceptionReason(r string) bool {
	switch r {
	case ReasonWorkerShutdown, ReasonMalformedPayload, ReasonResourceUnavailable,
		ReasonInternalError, ReasonIntermittentTask:
		return true
	}
	return false
}

// TaskExceptionRequest is the body of reportException.
type TaskExceptionRequest struct {
	Reason string `json:"reason"`
}

// TaskMetadata is the task's human-facing description (task-metadata.json).
type TaskMetadata struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Owner       string `json:"owner"`
	Source      string `json:"source"`
}

// TaskDefinition is a task definition (task.json) with the fields the worker
// reads decoded, and the exact JSON it was decoded from kept in Raw, so that
// unknown fields survive and chain of trust can embed the definition byte
// for byte.
//
// MarshalJSON emits Raw when it is set and the typed fields otherwise: after
// editing the fields of a decoded definition, clear Raw before marshalling.
type TaskDefinition struct {
	ProvisionerID string            `json:"provisionerId"`
	WorkerType    string            `json:"workerType"`
	TaskQueueID   string            `json:"taskQueueId"`
	SchedulerID   string            `json:"schedulerId"`
	ProjectID     string            `json:"projectId,omitempty"`
	TaskGroupID   string            `json:"taskGroupId"`
	Dependencies  []string          `json:"dependencies"`
	Requires      string            `json:"requires"`
	Routes        []string          `json:"routes"`
	Priority      string            `json:"priority"`
	Retries       int               `json:"retries"`
	Created       time.Time         `json:"created"`
	Deadline      time.Time         `json:"deadline"`
	Expires       time.Time         `json:"expires,omitzero"`
	Scopes        []string          `json:"scopes"`
	Payload       json.RawMessage   `json:"payload"`
	Metadata      TaskMetadata      `json:"metadata"`
	Tags          map[string]string `json:"tags"`
	Extra         json.RawMessage   `json:"extra"`

	// Raw is the JSON the definition was decoded from, unchanged.
	Raw json.RawMessage `json:"-"`
}

// taskDefinitionFields has TaskDefinition's fields without its methods.
type taskDefinitionFields TaskDefinition

// UnmarshalJSON decodes the typed fields and keeps a copy of b in Raw.
func (t *TaskDefinition) UnmarshalJSON(b []byte) error {
	var f taskDefinitionFields
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("task definition: %w", err)
	}
	*t = TaskDefinition(f)
	t.Raw = append(json.RawMessage(nil), b...)
	return nil
}

// MarshalJSON returns Raw when set; otherwise it encodes the typed fields,
// sending empty arrays and objects (never null) for the required ones.
func (t TaskDefinition) MarshalJSON() ([]byte, error) {
	if len(t.Raw) > 0 {
		return t.Raw, nil
	}
	f := taskDefinitionFields(t)
	if f.Dependencies == nil {
		f.Dependencies = []string{}
	}
	if f.Routes == nil {
		f.Routes = []string{}
	}
	if f.Scopes == nil {
		f.Scopes = []string{}
	}
	if f.Tags == nil {
		f.Tags = map[string]string{}
	}
	if len(f.Payload) == 0 {
		f.Payload = json.RawMessage("{}")
	}
	if len(f.Extra) == 0 {
		f.Extra = json.RawMessage("{}")
	}
	return json.Marshal(f)
}

// Artifact storage types the worker creates (post-artifact-request.json).
const (
	StorageS3        = "s3"
	StorageReference = "reference"
	StorageLink      = "link"
	StorageError     = "error"
)

// Reasons for an error artifact (post-artifact-request.json).
const (
	ArtifactFileMissing     = "file-missing-on-worker"
	ArtifactInvalidResource = "invalid-resource-on-worker"
	ArtifactTooLarge        = "too-large-file-on-worker"
	ArtifactFileNotReadable = "file-not-readable-on-worker"
)

// ArtifactRequest is the body of createArtifact: the union of the fields of
// the storage types the worker uses. It marshals to exactly the fields of its
// StorageType:
//
//	s3:        storageType, expires, contentType[, contentLength]
//	reference: storageType, expires, url, contentType
//	link:      storageType, expires, artifact[, contentType]
//	error:     storageType, expires, reason, message
//
// Optional fields (in brackets) are sent when non-zero. The constructors
// S3Artifact, ReferenceArtifact, LinkArtifact and ErrorArtifact fill in the
// required ones.
type ArtifactRequest struct {
	StorageType   string
	Expires       time.Time
	ContentType   string
	ContentLength int64  // s3 only
	URL           string // reference
	Artifact      string // link: name of the target artifact
	Reason        string // error: one of the Artifact* reasons
	Message       string // error
}

// S3Artifact requests a presigned PUT URL for an upload.
func S3Artifact(expires time.Time, contentType string) ArtifactRequest {
	return ArtifactRequest{StorageType: StorageS3, Expires: expires, ContentType: contentType}
}

// ReferenceArtifact makes an artifact that redirects to redirectURL.
func ReferenceArtifact(expires time.Time, redirectURL, contentType string) ArtifactRequest {
	return ArtifactRequest{StorageType: StorageReference, Expires: expires, URL: redirectURL, ContentType: contentType}
}

// LinkArtifact makes an artifact that resolves to the task's artifact target.
func LinkArtifact(expires time.Time, target string) ArtifactRequest {
	return ArtifactRequest{StorageType: StorageLink, Expires: expires, Artifact: target}
}

// ErrorArtifact makes an artifact whose fetches fail with 424, reason and message.
func ErrorArtifact(expires time.Time, reason, message string) ArtifactRequest {
	return ArtifactRequest{StorageType: StorageError, Expires: expires, Reason: reason, Message: message}
}

// tcTimeFormat is how JavaScript (and so Taskcluster) writes times.
const tcTimeFormat = "2006-01-02T15:04:05.000Z07:00"

// MarshalJSON encodes exactly the fields of r.StorageType.
func (r ArtifactRequest) MarshalJSON() ([]byte, error) {
	if r.Expires.IsZero() {
		return nil, fmt.Errorf("artifact request: %s artifact has no expires", r.StorageType)
	}
	exp := r.Expires.UTC().Format(tcTimeFormat)
	switch r.StorageType {
	case StorageS3:
		var length *int64
		if r.ContentLength > 0 {
			length = &r.ContentLength
		}
		return json.Marshal(struct {
			StorageType   string `json:"storageType"`
			Expires       string `json:"expires"`
			ContentType   string `json:"contentType"`
			ContentLength *int64 `json:"contentLength,omitempty"`
		}{r.StorageType, exp, r.ContentType, length})
	case StorageReference:
		return json.Marshal(struct {
			StorageType string `json:"storageType"`
			Expires     string `json:"expires"`
			URL         string `json:"url"`
			ContentType string `json:"contentType"`
		}{r.StorageType, exp, r.URL, r.ContentType})
	case StorageLink:
		return json.Marshal(struct {
			StorageType string `json:"storageType"`
			Expires     string `json:"expires"`
			Artifact    string `json:"artifact"`
			ContentType string `json:"contentType,omitempty"`
		}{r.StorageType, exp, r.Artifact, r.ContentType})
	case StorageError:
		return json.Marshal(struct {
			StorageType string `json:"storageType"`
			Expires     string `json:"expires"`
			Reason      string `json:"reason"`
			Message     string `json:"message"`
		}{r.StorageType, exp, r.Reason, r.Message})
	}
	return nil, fmt.Errorf("artifact request: unsupported storageType %q", r.StorageType)
}

// UnmarshalJSON decodes any of the supported storage types' bodies (useful
// to fakes and the local queue).
func (r *ArtifactRequest) UnmarshalJSON(b []byte) error {
	var f struct {
		StorageType   string    `json:"storageType"`
		Expires       time.Time `json:"expires"`
		ContentType   string    `json:"contentType"`
		ContentLength int64     `json:"contentLength"`
		URL           string    `json:"url"`
		Artifact      string    `json:"artifact"`
		Reason        string    `json:"reason"`
		Message       string    `json:"message"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("artifact request: %w", err)
	}
	*r = ArtifactRequest(f)
	return nil
}

// ArtifactResponse is the answer to createArtifact. For s3 it carries the
// presigned PutURL (upload with PutArtifact, sending ContentType); the other
// storage types answer with StorageType alone.
type ArtifactResponse struct {
	StorageType string    `json:"storageType"`
	PutURL      string    `json:"putUrl,omitempty"`
	Expires     time.Time `json:"expires,omitzero"`
	ContentType string    `json:"contentType,omitempty"`
}

// Artifact describes an existing artifact (artifact-response.json).
type Artifact struct {
	StorageType   string    `json:"storageType"`
	Name          string    `json:"name"`
	Expires       time.Time `json:"expires"`
	ContentType   string    `json:"contentType"`
	ContentLength int64     `json:"contentLength,omitempty"`
}

// ListArtifactsResponse is one page of artifacts (list-artifacts-response.json).
// A non-empty ContinuationToken means more may follow.
type ListArtifactsResponse struct {
	Artifacts         []Artifact `json:"artifacts"`
	ContinuationToken string     `json:"continuationToken,omitempty"`
}
