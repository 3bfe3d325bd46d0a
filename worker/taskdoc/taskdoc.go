// Package taskdoc turns what a person submits (a bare payload or a partial
// task definition) into a whole task definition for createTask, as
// `docker-worker submit` and the embedded queue's web page both do.
package taskdoc

import (
	"time"

	"go.dockerworker.dev/docker-worker/worker/slugid"
)

// Defaults are what Complete fills in when the document leaves it out.
type Defaults struct {
	// ProvisionerID and WorkerType are the pool, used when the document
	// names neither a taskQueueId nor a provisionerId.
	ProvisionerID, WorkerType string
	// Metadata are the metadata fields (name, description, owner,
	// source) to add where absent.
	Metadata map[string]string
}

// Complete returns the task's id and its whole definition. doc is a task
// definition when it has a "payload", else the payload itself; doc's
// maps may be changed. A "taskId" in doc is kept as the id (and removed
// from the definition); otherwise a new slugid is made. created, deadline
// (+1 hour) and expires (+7 days) are set from now when absent.
func Complete(doc map[string]any, d Defaults, now time.Time) (string, map[string]any) {
	task := doc
	if _, ok := doc["payload"]; !ok {
		task = map[string]any{"payload": doc}
	}
	taskID, _ := task["taskId"].(string)
	delete(task, "taskId") // not part of a task definition
	if taskID == "" {
		taskID = slugid.Nice()
	}
	_, hasQueue := task["taskQueueId"]
	_, hasProv := task["provisionerId"]
	if !hasQueue && !hasProv {
		task["provisionerId"], task["workerType"] = d.ProvisionerID, d.WorkerType
	}
	ts := func(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
	setDefault(task, "created", ts(now))
	setDefault(task, "deadline", ts(now.Add(time.Hour)))
	setDefault(task, "expires", ts(now.Add(7*24*time.Hour)))
	meta, _ := task["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		task["metadata"] = meta
	}
	for k, v := range d.Metadata {
		setDefault(meta, k, v)
	}
	return taskID, task
}

func setDefault(m map[string]any, k string, v any) {
	if _, ok := m[k]; !ok {
		m[k] = v
	}
}
