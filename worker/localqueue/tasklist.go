package localqueue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// TaskSummary is one task as [Queue.ListTasks] reports it: enough for a
// list of tasks, not the whole definition.
type TaskSummary struct {
	TaskID      string `json:"taskId"`
	TaskGroupID string `json:"taskGroupId"`
	TaskQueueID string `json:"taskQueueId"`
	Name        string `json:"name"`
	State       string `json:"state"`
	Created     string `json:"created"`
	Deadline    string `json:"deadline"`
	Runs        int    `json:"runs"`
	// ReasonResolved is the last run's, when it is resolved.
	ReasonResolved string `json:"reasonResolved,omitempty"`
}

// TaskFilter selects the tasks [Queue.ListTasks] returns; empty fields
// select every task.
type TaskFilter struct {
	// State is a task state (unscheduled, pending, running, completed,
	// failed, exception).
	State string
	// TaskGroupID keeps the tasks of one task group.
	TaskGroupID string
	// Limit bounds the number of tasks returned; below 1 means no bound.
	Limit int
}

// ListTasks returns the tasks the queue holds that pass f, newest
// (by created, then taskId) first, and how many passed f in all (the list
// is cut at f.Limit). It is not part of the Taskcluster API, which has no
// listing of every task: the embedded queue's web page uses it.
func (q *Queue) ListTasks(ctx context.Context, f TaskFilter) ([]TaskSummary, int, error) {
	q.mu.Lock()
	var ids []string
	for gid, g := range q.groups {
		if f.TaskGroupID == "" || gid == f.TaskGroupID {
			ids = append(ids, g.taskIDs...)
		}
	}
	q.mu.Unlock()
	out := make([]TaskSummary, 0, len(ids))
	for _, id := range ids {
		rec, err := q.store.Get(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue // expired meanwhile
		}
		if err != nil {
			return nil, 0, fmt.Errorf("list tasks: %w", err)
		}
		s := TaskSummary{
			TaskID:      rec.TaskID,
			TaskGroupID: rec.Task.TaskGroupID,
			TaskQueueID: rec.Task.TaskQueueID,
			Name:        rec.Task.Metadata.Name,
			State:       rec.taskState(),
			Created:     rec.Task.Created,
			Deadline:    rec.Task.Deadline,
			Runs:        len(rec.Runs),
		}
		if n := len(rec.Runs); n > 0 {
			s.ReasonResolved = rec.Runs[n-1].ReasonResolved
		}
		if f.State != "" && s.State != f.State {
			continue
		}
		out = append(out, s)
	}
	// Dates are normalised to one format, so they sort as strings.
	slices.SortFunc(out, func(a, b TaskSummary) int {
		if c := strings.Compare(b.Created, a.Created); c != 0 {
			return c
		}
		return strings.Compare(b.TaskID, a.TaskID)
	})
	total := len(out)
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, total, nil
}
