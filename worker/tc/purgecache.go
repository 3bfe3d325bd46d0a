package tc

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// The purge-cache service keeps requests to purge named caches on the
// workers of a worker pool: a worker asks for its pool's requests before it
// reuses a cache, and discards caches of that name created before the
// request's Before.

const purgeCacheService = "purge-cache"

// PurgeRequest asks the workers of WorkerPoolID (provisionerId/workerType)
// to discard their caches named CacheName that were created before Before.
type PurgeRequest struct {
	WorkerPoolID, CacheName string
	Before                  time.Time
}

// purgeRequestJSON is an item of purge-cache-requests.json.
type purgeRequestJSON struct {
	ProvisionerID string    `json:"provisionerId"`
	WorkerType    string    `json:"workerType"`
	CacheName     string    `json:"cacheName"`
	Before        time.Time `json:"before"`
}

func (p purgeRequestJSON) request() PurgeRequest {
	return PurgeRequest{WorkerPoolID: p.ProvisionerID + "/" + p.WorkerType, CacheName: p.CacheName, Before: p.Before}
}

// PurgeRequests returns the open purge requests of workerPoolID whose
// Before is at or after since (all of them when since is zero).
func (c *Client) PurgeRequests(ctx context.Context, workerPoolID string, since time.Time) ([]PurgeRequest, error) {
	var query url.Values
	if !since.IsZero() {
		query = url.Values{"since": {since.UTC().Format(tcTimeFormat)}}
	}
	var out struct {
		Requests []purgeRequestJSON `json:"requests"`
	}
	if err := c.Request(ctx, purgeCacheService, http.MethodGet, "/purge-cache/"+PathEscape(workerPoolID), query, nil, &out); err != nil {
		return nil, fmt.Errorf("purge requests of %s: %w", workerPoolID, err)
	}
	reqs := make([]PurgeRequest, len(out.Requests))
	for i, p := range out.Requests {
		reqs[i] = p.request()
	}
	return reqs, nil
}

// PurgeCache asks the workers of workerPoolID to discard their caches named
// cacheName created until now.
func (c *Client) PurgeCache(ctx context.Context, workerPoolID, cacheName string) error {
	body := struct {
		CacheName string `json:"cacheName"`
	}{cacheName}
	if err := c.Request(ctx, purgeCacheService, http.MethodPost, "/purge-cache/"+PathEscape(workerPoolID), nil, body, nil); err != nil {
		return fmt.Errorf("purge caches %q of %s: %w", cacheName, workerPoolID, err)
	}
	return nil
}

// AllPurgeRequests returns one page of the open purge requests of every
// worker pool, paged as ListNamespaces.
func (c *Client) AllPurgeRequests(ctx context.Context, continuationToken string, limit int) ([]PurgeRequest, string, error) {
	var out struct {
		Requests          []purgeRequestJSON `json:"requests"`
		ContinuationToken string             `json:"continuationToken"`
	}
	if err := c.Request(ctx, purgeCacheService, http.MethodGet, "/purge-cache/list", listQuery(continuationToken, limit), nil, &out); err != nil {
		return nil, "", fmt.Errorf("all purge requests: %w", err)
	}
	reqs := make([]PurgeRequest, len(out.Requests))
	for i, p := range out.Requests {
		reqs[i] = p.request()
	}
	return reqs, out.ContinuationToken, nil
}
