package tc

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// The queue calls below use the client's credentials: the worker's own for
// ClaimWork, a run's temporary credentials (see WithCredentials) for the
// run-scoped calls.

const queueService = "queue"

func taskPath(taskID string) string { return "/task/" + PathEscape(taskID) }

func runPath(taskID string, runID int) string {
	return taskPath(taskID) + "/runs/" + strconv.Itoa(runID)
}

// ClaimWork asks for up to req.Tasks tasks (at least 1) from taskQueueID
// (provisionerId/workerType). The answer may hold no tasks.
func (c *Client) ClaimWork(ctx context.Context, taskQueueID string, req ClaimWorkRequest) (*ClaimWorkResponse, error) {
	if req.Tasks < 1 {
		req.Tasks = 1
	}
	var out ClaimWorkResponse
	if err := c.Request(ctx, queueService, http.MethodPost, "/claim-work/"+PathEscape(taskQueueID), nil, req, &out); err != nil {
		return nil, fmt.Errorf("claim work from %s: %w", taskQueueID, err)
	}
	return &out, nil
}

// ReclaimTask extends the claim on a run; the answer carries new temporary
// credentials that replace the previous ones.
func (c *Client) ReclaimTask(ctx context.Context, taskID string, runID int) (*TaskReclaimResponse, error) {
	var out TaskReclaimResponse
	if err := c.Request(ctx, queueService, http.MethodPost, runPath(taskID, runID)+"/reclaim", nil, nil, &out); err != nil {
		return nil, fmt.Errorf("reclaim %s/%d: %w", taskID, runID, err)
	}
	return &out, nil
}

// ReportCompleted resolves a run as completed.
func (c *Client) ReportCompleted(ctx context.Context, taskID string, runID int) (*TaskStatusResponse, error) {
	return c.resolve(ctx, taskID, runID, "completed", nil)
}

// ReportFailed resolves a run as failed.
func (c *Client) ReportFailed(ctx context.Context, taskID string, runID int) (*TaskStatusResponse, error) {
	return c.resolve(ctx, taskID, runID, "failed", nil)
}

// ReportException resolves a run as exception; reason must be one of the
// Reason* constants.
func (c *Client) ReportException(ctx context.Context, taskID string, runID int, reason string) (*TaskStatusResponse, error) {
	if !validExceptionReason(reason) {
		return nil, fmt.Errorf("report exception %s/%d: invalid reason %q", taskID, runID, reason)
	}
	return c.resolve(ctx, taskID, runID, "exception", TaskExceptionRequest{Reason: reason})
}

func (c *Client) resolve(ctx context.Context, taskID string, runID int, resolution string, in any) (*TaskStatusResponse, error) {
	var out TaskStatusResponse
	if err := c.Request(ctx, queueService, http.MethodPost, runPath(taskID, runID)+"/"+resolution, nil, in, &out); err != nil {
		return nil, fmt.Errorf("report %s/%d %s: %w", taskID, runID, resolution, err)
	}
	return &out, nil
}

// CreateArtifact declares artifact name on a run. name is sent as one
// escaped path segment ("public/logs/live.log" → "public%2Flogs%2Flive.log").
func (c *Client) CreateArtifact(ctx context.Context, taskID string, runID int, name string, req ArtifactRequest) (*ArtifactResponse, error) {
	var out ArtifactResponse
	if err := c.Request(ctx, queueService, http.MethodPost, runPath(taskID, runID)+"/artifacts/"+PathEscape(name), nil, req, &out); err != nil {
		return nil, fmt.Errorf("create artifact %q on %s/%d: %w", name, taskID, runID, err)
	}
	return &out, nil
}

// Task fetches a task definition; Raw holds the exact JSON returned.
func (c *Client) Task(ctx context.Context, taskID string) (*TaskDefinition, error) {
	var out TaskDefinition
	if err := c.Request(ctx, queueService, http.MethodGet, taskPath(taskID), nil, nil, &out); err != nil {
		return nil, fmt.Errorf("get task %s: %w", taskID, err)
	}
	return &out, nil
}

// Status fetches a task's status.
func (c *Client) Status(ctx context.Context, taskID string) (*TaskStatusResponse, error) {
	var out TaskStatusResponse
	if err := c.Request(ctx, queueService, http.MethodGet, taskPath(taskID)+"/status", nil, nil, &out); err != nil {
		return nil, fmt.Errorf("get status of %s: %w", taskID, err)
	}
	return &out, nil
}

// CreateTask creates taskID from def, a create-task-request.json document
// sent as is.
func (c *Client) CreateTask(ctx context.Context, taskID string, def json.RawMessage) (*TaskStatusResponse, error) {
	var out TaskStatusResponse
	if err := c.Request(ctx, queueService, http.MethodPut, taskPath(taskID), nil, def, &out); err != nil {
		return nil, fmt.Errorf("create task %s: %w", taskID, err)
	}
	return &out, nil
}

// CancelTask cancels a task; running runs resolve as exception/canceled.
func (c *Client) CancelTask(ctx context.Context, taskID string) (*TaskStatusResponse, error) {
	var out TaskStatusResponse
	if err := c.Request(ctx, queueService, http.MethodPost, taskPath(taskID)+"/cancel", nil, nil, &out); err != nil {
		return nil, fmt.Errorf("cancel task %s: %w", taskID, err)
	}
	return &out, nil
}

// ListArtifacts returns one page of a run's artifacts; pass the previous
// page's ContinuationToken (or "" for the first page).
func (c *Client) ListArtifacts(ctx context.Context, taskID string, runID int, continuationToken string) (*ListArtifactsResponse, error) {
	var out ListArtifactsResponse
	if err := c.Request(ctx, queueService, http.MethodGet, runPath(taskID, runID)+"/artifacts", pageQuery(continuationToken), nil, &out); err != nil {
		return nil, fmt.Errorf("list artifacts of %s/%d: %w", taskID, runID, err)
	}
	return &out, nil
}

// ListLatestArtifacts is ListArtifacts for the task's latest run.
func (c *Client) ListLatestArtifacts(ctx context.Context, taskID, continuationToken string) (*ListArtifactsResponse, error) {
	var out ListArtifactsResponse
	if err := c.Request(ctx, queueService, http.MethodGet, taskPath(taskID)+"/artifacts", pageQuery(continuationToken), nil, &out); err != nil {
		return nil, fmt.Errorf("list latest artifacts of %s: %w", taskID, err)
	}
	return &out, nil
}

func pageQuery(continuationToken string) url.Values {
	if continuationToken == "" {
		return nil
	}
	return url.Values{"continuationToken": {continuationToken}}
}

// ArtifactURL returns the unsigned getArtifact URL of a run's artifact; fetch
// it with Download.
func (c *Client) ArtifactURL(taskID string, runID int, name string) string {
	return c.ServiceURL(queueService, runPath(taskID, runID)+"/artifacts/"+PathEscape(name))
}
