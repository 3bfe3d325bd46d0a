package tc

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// Task-level queue calls a user (rather than a worker) makes.

// ScheduleTask schedules a task that is unscheduled (its dependencies not
// yet resolved); other tasks are answered with their status unchanged.
func (c *Client) ScheduleTask(ctx context.Context, taskID string) (*TaskStatusResponse, error) {
	var out TaskStatusResponse
	if err := c.Request(ctx, queueService, http.MethodPost, taskPath(taskID)+"/schedule", nil, nil, &out); err != nil {
		return nil, fmt.Errorf("schedule task %s: %w", taskID, err)
	}
	return &out, nil
}

// RerunTask adds a new run to a resolved task and resets its retries;
// pending and running tasks are answered with their status unchanged.
func (c *Client) RerunTask(ctx context.Context, taskID string) (*TaskStatusResponse, error) {
	var out TaskStatusResponse
	if err := c.Request(ctx, queueService, http.MethodPost, taskPath(taskID)+"/rerun", nil, nil, &out); err != nil {
		return nil, fmt.Errorf("rerun task %s: %w", taskID, err)
	}
	return &out, nil
}

// TaskDefinitionAndStatus is one entry of a task listing
// (task-definition-and-status.json).
type TaskDefinitionAndStatus struct {
	Status TaskStatus     `json:"status"`
	Task   TaskDefinition `json:"task"`
}

// ListTaskGroupResponse is one page of a task group
// (list-task-group-response.json). A non-empty ContinuationToken means more
// may follow.
type ListTaskGroupResponse struct {
	TaskGroupID       string                    `json:"taskGroupId"`
	SchedulerID       string                    `json:"schedulerId"`
	Expires           string                    `json:"expires"`
	Tasks             []TaskDefinitionAndStatus `json:"tasks"`
	ContinuationToken string                    `json:"continuationToken,omitempty"`
}

// ListTaskGroup returns one page of the tasks of a task group; pass the
// previous page's ContinuationToken ("" for the first) and a limit (0 for
// the queue's default).
func (c *Client) ListTaskGroup(ctx context.Context, taskGroupID, continuationToken string, limit int) (*ListTaskGroupResponse, error) {
	query := url.Values{}
	if continuationToken != "" {
		query.Set("continuationToken", continuationToken)
	}
	if limit > 0 {
		query.Set("limit", strconv.Itoa(limit))
	}
	var out ListTaskGroupResponse
	if err := c.Request(ctx, queueService, http.MethodGet, "/task-group/"+PathEscape(taskGroupID)+"/list", query, nil, &out); err != nil {
		return nil, fmt.Errorf("list task group %s: %w", taskGroupID, err)
	}
	return &out, nil
}

// LatestArtifactURL returns the unsigned getLatestArtifact URL of a task's
// artifact; fetch it with Download.
func (c *Client) LatestArtifactURL(taskID, name string) string {
	return c.ServiceURL(queueService, taskPath(taskID)+"/artifacts/"+PathEscape(name))
}
