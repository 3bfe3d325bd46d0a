package localqueue

import (
	"net/http"
	"strings"
	"time"
)

// The purge-cache service (`<rootUrl>/api/purge-cache/v1`) keeps requests
// to purge the caches of a name on the workers of a worker pool: a worker
// asks for the requests of its pool before it uses a cache, and drops its
// caches of that name created before the request's `before`. A request
// lasts a day (the real service's expiry), and asking again moves its
// `before` to now.

const purgeCacheSchema = "/schemas/purge-cache/v1/purge-cache-request.json#"

// purgeRequestLifetime is how long a purge request is kept.
const purgeRequestLifetime = 24 * time.Hour

// purgeRequestJSON is an item of purge-cache-requests.json, which names the
// pool by provisionerId and workerType.
type purgeRequestJSON struct {
	ProvisionerID string `json:"provisionerId"`
	WorkerType    string `json:"workerType"`
	CacheName     string `json:"cacheName"`
	Before        string `json:"before"`
}

func (p *PurgeRecord) toJSON() purgeRequestJSON {
	prov, wt, _ := strings.Cut(p.WorkerPoolID, "/")
	return purgeRequestJSON{ProvisionerID: prov, WorkerType: wt, CacheName: p.CacheName, Before: formatTime(p.Before)}
}

func (q *Queue) purgeCache(w http.ResponseWriter, rq *apiRequest) error {
	var in struct {
		CacheName *string `json:"cacheName"`
	}
	if err := decodeBody(rq, purgeCacheSchema, &in); err != nil {
		return err
	}
	if in.CacheName == nil {
		return invalidInput(purgeCacheSchema, "cacheName is required")
	}
	if err := rq.authorize(map[string]any{"cacheName": *in.CacheName}); err != nil {
		return err
	}
	pool := rq.params["workerPoolId"]
	q.mu.Lock()
	defer q.mu.Unlock()
	t := q.begin(rq.r.Context())
	t.purges = append(t.purges, &PurgeRecord{WorkerPoolID: pool, CacheName: *in.CacheName, Before: rq.now, Expires: rq.now.Add(purgeRequestLifetime)})
	if err := t.commit(); err != nil {
		return err
	}
	q.log.Info("cache purge requested", "workerPoolId", pool, "cacheName", *in.CacheName)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// purgeRequests answers the live requests of a worker pool whose `before`
// is at or after the `since` query parameter (default: all of them).
func (q *Queue) purgeRequests(w http.ResponseWriter, rq *apiRequest) error {
	var since time.Time
	if s := rq.r.URL.Query().Get("since"); s != "" {
		var err error
		if since, err = parseTime(s); err != nil {
			return apiErrorf(codeInvalidRequestArguments, "since %q is not a date-time: Invalid Date", s)
		}
	}
	recs, err := q.store.PurgeRequests(rq.r.Context(), rq.params["workerPoolId"], "", 0)
	if err != nil {
		return err
	}
	out := struct {
		Requests []purgeRequestJSON `json:"requests"`
	}{Requests: []purgeRequestJSON{}}
	for _, p := range recs {
		if p.Expires.After(rq.now) && !p.Before.Before(since) {
			out.Requests = append(out.Requests, p.toJSON())
		}
	}
	q.reply(w, http.StatusOK, out)
	return nil
}

// allPurgeRequests answers one page of the live requests of every pool.
func (q *Queue) allPurgeRequests(w http.ResponseWriter, rq *apiRequest) error {
	ctx := rq.r.Context()
	recs, token, err := page(rq,
		func(after string, n int) ([]*PurgeRecord, error) { return q.store.PurgeRequests(ctx, "", after, n) },
		(*PurgeRecord).Key,
		func(p *PurgeRecord) bool { return p.Expires.After(rq.now) })
	if err != nil {
		return err
	}
	out := struct {
		Requests          []purgeRequestJSON `json:"requests"`
		ContinuationToken string             `json:"continuationToken,omitempty"`
	}{Requests: make([]purgeRequestJSON, len(recs)), ContinuationToken: token}
	for i, p := range recs {
		out.Requests[i] = p.toJSON()
	}
	q.reply(w, http.StatusOK, out)
	return nil
}
