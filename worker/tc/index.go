package tc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// The index service finds tasks by dot-separated index paths
// (`<namespace>.<name>`), e.g. the task that built a Docker image for
// `indexed-image` payloads. Index paths and namespaces contain no slashes.

const indexService = "index"

// IndexedTask is an entry of the index (indexed-task-response.json): the
// task found at index path Namespace, with the rank and data it was
// indexed with, until Expires.
type IndexedTask struct {
	Namespace string
	TaskID    string
	// Rank decides which of the tasks inserted at one path stays: the
	// highest (a later insert of an equal rank replaces). The service
	// allows any number; a fractional rank is read as its integral part.
	Rank    int64
	Data    json.RawMessage
	Expires time.Time
}

// UnmarshalJSON decodes indexed-task-response.json.
func (t *IndexedTask) UnmarshalJSON(b []byte) error {
	var raw struct {
		Namespace string          `json:"namespace"`
		TaskID    string          `json:"taskId"`
		Rank      json.Number     `json:"rank"`
		Data      json.RawMessage `json:"data"`
		Expires   time.Time       `json:"expires"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	rank, err := raw.Rank.Int64()
	if err != nil {
		f, ferr := raw.Rank.Float64()
		if ferr != nil || math.IsNaN(f) || f > math.MaxInt64 || f < math.MinInt64 {
			return fmt.Errorf("indexed task %s: rank %q is not a number in range", raw.Namespace, raw.Rank)
		}
		rank = int64(f)
	}
	*t = IndexedTask{Namespace: raw.Namespace, TaskID: raw.TaskID, Rank: rank, Data: raw.Data, Expires: raw.Expires}
	return nil
}

// InsertTaskRequest is the body of insertTask (insert-task-request.json).
// A nil Data is sent as {}.
type InsertTaskRequest struct {
	TaskID  string
	Rank    int64
	Data    json.RawMessage
	Expires time.Time
}

// MarshalJSON encodes insert-task-request.json.
func (r InsertTaskRequest) MarshalJSON() ([]byte, error) {
	if r.Expires.IsZero() {
		return nil, errors.New("insert task request: no expires")
	}
	data := r.Data
	if data == nil {
		data = json.RawMessage(`{}`)
	}
	return json.Marshal(struct {
		TaskID  string          `json:"taskId"`
		Rank    int64           `json:"rank"`
		Data    json.RawMessage `json:"data"`
		Expires string          `json:"expires"`
	}{r.TaskID, r.Rank, data, r.Expires.UTC().Format(tcTimeFormat)})
}

// IndexNamespace is a namespace of the index: Namespace is its full path,
// Name its last element.
type IndexNamespace struct {
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	Expires   time.Time `json:"expires"`
}

// ListNamespacesResponse is one page of ListNamespaces; ContinuationToken
// is empty on the last page.
type ListNamespacesResponse struct {
	Namespaces        []IndexNamespace `json:"namespaces"`
	ContinuationToken string           `json:"continuationToken,omitempty"`
}

// ListIndexedTasksResponse is one page of ListTasks; ContinuationToken is
// empty on the last page.
type ListIndexedTasksResponse struct {
	Tasks             []IndexedTask `json:"tasks"`
	ContinuationToken string        `json:"continuationToken,omitempty"`
}

// FindTask returns the task indexed at indexPath. When there is none (or it
// has expired) the error is a 404 ResourceNotFound [*APIError]: test it
// with [IsNotFound].
func (c *Client) FindTask(ctx context.Context, indexPath string) (*IndexedTask, error) {
	var out IndexedTask
	if err := c.Request(ctx, indexService, http.MethodGet, "/task/"+PathEscape(indexPath), nil, nil, &out); err != nil {
		return nil, fmt.Errorf("find indexed task %s: %w", indexPath, err)
	}
	return &out, nil
}

// InsertTask indexes req.TaskID at namespace (a full index path). The
// answer is the entry at that path afterwards: the one inserted, or the one
// already there when its rank is higher (which is not an error).
func (c *Client) InsertTask(ctx context.Context, namespace string, req InsertTaskRequest) (*IndexedTask, error) {
	var out IndexedTask
	if err := c.Request(ctx, indexService, http.MethodPut, "/task/"+PathEscape(namespace), nil, req, &out); err != nil {
		return nil, fmt.Errorf("insert %s into the index at %s: %w", req.TaskID, namespace, err)
	}
	return &out, nil
}

// ListNamespaces returns one page of the namespaces directly under
// namespace ("" for the top level): pass the previous page's
// ContinuationToken (or "" for the first page); limit 0 means the
// service's default (1000).
func (c *Client) ListNamespaces(ctx context.Context, namespace, continuationToken string, limit int) (*ListNamespacesResponse, error) {
	var out ListNamespacesResponse
	if err := c.Request(ctx, indexService, http.MethodGet, "/namespaces/"+PathEscape(namespace), listQuery(continuationToken, limit), nil, &out); err != nil {
		return nil, fmt.Errorf("list index namespaces under %q: %w", namespace, err)
	}
	return &out, nil
}

// ListTasks returns one page of the tasks indexed directly in namespace,
// paged as ListNamespaces.
func (c *Client) ListTasks(ctx context.Context, namespace, continuationToken string, limit int) (*ListIndexedTasksResponse, error) {
	var out ListIndexedTasksResponse
	if err := c.Request(ctx, indexService, http.MethodGet, "/tasks/"+PathEscape(namespace), listQuery(continuationToken, limit), nil, &out); err != nil {
		return nil, fmt.Errorf("list indexed tasks in %q: %w", namespace, err)
	}
	return &out, nil
}

// IndexedArtifactURL returns the unsigned findArtifactFromTask URL of
// artifact name of the task indexed at indexPath. The index answers it with
// a redirect to the queue's latest-run artifact; fetch it with Download.
func (c *Client) IndexedArtifactURL(indexPath, name string) string {
	return c.ServiceURL(indexService, "/task/"+PathEscape(indexPath)+"/artifacts/"+PathEscape(name))
}

func listQuery(continuationToken string, limit int) url.Values {
	q := pageQuery(continuationToken)
	if limit > 0 {
		if q == nil {
			q = url.Values{}
		}
		q.Set("limit", strconv.Itoa(limit))
	}
	return q
}
