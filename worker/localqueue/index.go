package localqueue

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"go.dockerworker.dev/docker-worker/worker/localqueue/internal/hawkserver"
	"go.dockerworker.dev/docker-worker/worker/scopes"
)

// The index service (`<rootUrl>/api/index/v1`) finds tasks by dot-separated
// names. An entry lives at an index path `<namespace>.<name>`; inserting one
// creates the namespaces above it (or extends their expiry), and replaces
// the entry at that path unless the latter has a higher rank. Tasks whose
// routes include `index.<namespace>` are indexed there when they complete,
// in the same transaction as the resolution, as the real index service does
// on the queue's task-completed message.

// namespacePattern is the form of namespaces and index paths the real index
// accepts: non-empty elements of URL-safe characters, joined by dots.
var namespacePattern = regexp.MustCompile(`^([a-zA-Z0-9_!~*'()%-]+\.)*[a-zA-Z0-9_!~*'()%-]+$`)

// indexRoutePrefix is the route prefix of tasks indexed on completion.
const indexRoutePrefix = "index."

const (
	insertTaskSchema      = "/schemas/index/v1/insert-task-request.json#"
	findTasksAtIndexInput = "/schemas/index/v1/list-tasks-at-index.json#"
)

// indexedTaskJSON is indexed-task-response.json (and an item of
// list-tasks-response.json).
type indexedTaskJSON struct {
	Namespace string          `json:"namespace"`
	TaskID    string          `json:"taskId"`
	Rank      float64         `json:"rank"`
	Data      json.RawMessage `json:"data"`
	Expires   string          `json:"expires"`
}

func (r *IndexedTaskRecord) toJSON() indexedTaskJSON {
	return indexedTaskJSON{Namespace: r.Path, TaskID: r.TaskID, Rank: r.Rank, Data: r.Data, Expires: formatTime(r.Expires)}
}

// namespaceJSON is an item of list-namespaces-response.json.
type namespaceJSON struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Expires   string `json:"expires"`
}

// namespaceExpiry is how long a namespace lives for an entry expiring at
// expires: to the end of that (UTC) day, so that most inserts leave the
// namespaces alone.
func namespaceExpiry(expires time.Time) time.Time {
	y, m, d := expires.UTC().Date()
	return time.Date(y, m, d+1, 0, 0, 0, 0, time.UTC)
}

// getIndexed returns the index entry at path as changed so far in t, or as
// stored; nil when there is none.
func (t *tx) getIndexed(path string) (*IndexedTaskRecord, error) {
	if r, ok := t.indexed[path]; ok {
		return r, nil
	}
	r, err := t.q.store.IndexedTask(t.ctx, path)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	return r, err
}

func (t *tx) putIndexed(r *IndexedTaskRecord) {
	if t.indexed == nil {
		t.indexed = map[string]*IndexedTaskRecord{}
	}
	if _, ok := t.indexed[r.Path]; !ok {
		t.idxOrder = append(t.idxOrder, r.Path)
	}
	t.indexed[r.Path] = r
}

// ensureNamespaces creates the namespaces that hold the entry at path, or
// extends their expiry to cover expires.
func (t *tx) ensureNamespaces(path string, expires time.Time) error {
	expires = namespaceExpiry(expires)
	for ns, _ := splitPath(path); ns != ""; ns, _ = splitPath(ns) {
		cur, ok := t.namespaces[ns]
		if !ok {
			var err error
			cur, err = t.q.store.Namespace(t.ctx, ns)
			if err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
		}
		if cur != nil && !cur.Expires.Before(expires) {
			continue
		}
		if t.namespaces == nil {
			t.namespaces = map[string]*NamespaceRecord{}
		}
		if _, ok := t.namespaces[ns]; !ok {
			t.nsOrder = append(t.nsOrder, ns)
		}
		t.namespaces[ns] = &NamespaceRecord{Path: ns, Expires: expires}
	}
	return nil
}

// insertIndexed adds in to t as the index's insertTask does: it replaces
// the entry at in.Path unless that one has a higher rank (an equal rank
// replaces). It returns the entry at the path afterwards.
func (t *tx) insertIndexed(in *IndexedTaskRecord) (*IndexedTaskRecord, error) {
	cur, err := t.getIndexed(in.Path)
	if err != nil {
		return nil, err
	}
	if cur != nil && cur.Rank > in.Rank {
		return cur, nil
	}
	if err := t.ensureNamespaces(in.Path, in.Expires); err != nil {
		return nil, err
	}
	t.putIndexed(in)
	return in, nil
}

// indexOptions are what a task's `extra.index` says about how it is indexed
// on completion.
type indexOptions struct {
	Rank    *float64        `json:"rank"`
	Expires *string         `json:"expires"`
	Data    json.RawMessage `json:"data"`
}

// indexCompletedLocked indexes a task that just completed under the
// namespace of each of its `index.<namespace>` routes: rank, data and
// expires from `extra.index` when given, else rank 0, data {} and the
// task's expires. A task whose `extra.index` is unusable (rank not a
// number, data not an object, expires not a date) is not indexed, as the
// real index service drops such messages.
func (q *Queue) indexCompletedLocked(t *tx, rec *TaskRecord) error {
	var namespaces []string
	for _, r := range rec.Task.Routes {
		if ns, ok := strings.CutPrefix(r, indexRoutePrefix); ok && namespacePattern.MatchString(ns) {
			namespaces = append(namespaces, ns)
		}
	}
	if len(namespaces) == 0 {
		return nil
	}
	rank, data, expires, err := indexOptionsOf(rec)
	if err != nil {
		q.log.Warn("task not indexed: unusable extra.index", "taskId", rec.TaskID, "err", err)
		return nil
	}
	for _, ns := range namespaces {
		if _, err := t.insertIndexed(&IndexedTaskRecord{Path: ns, TaskID: rec.TaskID, Rank: rank, Data: data, Expires: expires}); err != nil {
			return fmt.Errorf("index %s under %s: %w", rec.TaskID, ns, err)
		}
		q.log.Info("task indexed", "taskId", rec.TaskID, "namespace", ns)
	}
	return nil
}

// indexOptionsOf reads a task's `extra.index`, with its defaults.
func indexOptionsOf(rec *TaskRecord) (rank float64, data json.RawMessage, expires time.Time, err error) {
	data, expires = json.RawMessage(`{}`), mustTime(rec.Task.Expires)
	var extra struct {
		Index json.RawMessage `json:"index"`
	}
	if len(rec.Task.Extra) == 0 || json.Unmarshal(rec.Task.Extra, &extra) != nil || len(extra.Index) == 0 || string(extra.Index) == "null" {
		return rank, data, expires, nil
	}
	var opts indexOptions
	if err := json.Unmarshal(extra.Index, &opts); err != nil {
		return 0, nil, time.Time{}, fmt.Errorf("extra.index: %w", err)
	}
	if opts.Rank != nil {
		rank = *opts.Rank
	}
	if opts.Data != nil {
		if !isJSONObject(opts.Data) {
			return 0, nil, time.Time{}, errors.New("extra.index.data is not an object")
		}
		if data, err = canonicalJSON(opts.Data); err != nil {
			return 0, nil, time.Time{}, fmt.Errorf("extra.index.data: %w", err)
		}
	}
	if opts.Expires != nil {
		if expires, err = parseTime(*opts.Expires); err != nil {
			return 0, nil, time.Time{}, fmt.Errorf("extra.index.expires: %w", err)
		}
		expires = expires.UTC().Truncate(time.Millisecond)
	}
	return rank, data, expires, nil
}

// indexPathOf reads an index path parameter; "" (only for the listing
// routes, where it is optional) is the root.
func indexPathOf(rq *apiRequest, param string) string { return rq.params[param] }

// liveIndexed loads the entry at path, answering 404 when there is none or
// it has expired.
func (q *Queue) liveIndexed(rq *apiRequest, path string) (*IndexedTaskRecord, error) {
	r, err := q.store.IndexedTask(rq.r.Context(), path)
	if errors.Is(err, ErrNotFound) || (err == nil && !r.Expires.After(rq.now)) {
		return nil, apiErrorf(codeResourceNotFound, "Indexed task not found")
	}
	return r, err
}

func (q *Queue) findTask(w http.ResponseWriter, rq *apiRequest) error {
	r, err := q.liveIndexed(rq, indexPathOf(rq, "indexPath"))
	if err != nil {
		return err
	}
	q.reply(w, http.StatusOK, r.toJSON())
	return nil
}

// indexRedirectLifetime is how long the signed redirects of
// findArtifactFromTask stay good, as on a real deployment.
const indexRedirectLifetime = 15 * time.Minute

// findArtifactFromTask redirects to the queue's getLatestArtifact URL of
// the indexed task, as the real index does: plain for an artifact
// anonymous requests may get, else signed by the index's own client (a
// bewit good for 15 minutes), since the caller's scopes were checked here.
func (q *Queue) findArtifactFromTask(w http.ResponseWriter, rq *apiRequest) error {
	r, err := q.liveIndexed(rq, indexPathOf(rq, "indexPath"))
	if err != nil {
		return err
	}
	name := rq.params["name"]
	u := q.rootURL + "/api/queue/v1/task/" + url.PathEscape(r.TaskID) + "/artifacts/" + url.PathEscape(name)
	if !scopes.Satisfied(q.anonymous, "queue:get-artifact:"+name) {
		if u, err = hawkserver.SignURL(u, indexClientID, q.indexToken, rq.now.Add(indexRedirectLifetime)); err != nil {
			return fmt.Errorf("sign artifact URL: %w", err)
		}
	}
	http.Redirect(w, rq.r, u, http.StatusSeeOther)
	return nil
}

func (q *Queue) insertTask(w http.ResponseWriter, rq *apiRequest) error {
	var in struct {
		TaskID  *string         `json:"taskId"`
		Rank    *float64        `json:"rank"`
		Data    json.RawMessage `json:"data"`
		Expires *string         `json:"expires"`
	}
	if err := decodeBody(rq, insertTaskSchema, &in); err != nil {
		return err
	}
	var problems []string
	var rec IndexedTaskRecord
	switch {
	case in.TaskID == nil:
		problems = append(problems, "taskId is required")
	case !slugPattern.MatchString(*in.TaskID):
		problems = append(problems, fmt.Sprintf("taskId %q must match %s", *in.TaskID, slugPattern))
	default:
		rec.TaskID = *in.TaskID
	}
	if in.Rank == nil {
		problems = append(problems, "rank is required")
	} else {
		rec.Rank = *in.Rank
	}
	if in.Data == nil {
		problems = append(problems, "data is required")
	} else if !isJSONObject(in.Data) {
		problems = append(problems, "data must be an object")
	}
	if in.Expires == nil {
		problems = append(problems, "expires is required")
	} else if t, err := parseTime(*in.Expires); err != nil {
		problems = append(problems, fmt.Sprintf("expires %q must be a date-time", *in.Expires))
	} else {
		rec.Expires = t.UTC().Truncate(time.Millisecond)
	}
	if len(problems) > 0 {
		return invalidInput(insertTaskSchema, problems...)
	}
	if err := rq.authorize(nil); err != nil {
		return err
	}
	data, err := canonicalJSON(in.Data)
	if err != nil {
		return invalidInput(insertTaskSchema, "data: "+err.Error())
	}
	rec.Data, rec.Path = data, rq.params["namespace"]

	q.mu.Lock()
	defer q.mu.Unlock()
	t := q.begin(rq.r.Context())
	got, err := t.insertIndexed(&rec)
	if err != nil {
		return err
	}
	if err := t.commit(); err != nil {
		return err
	}
	q.log.Info("task inserted into the index", "namespace", rec.Path, "taskId", rec.TaskID, "stored", got == &rec)
	q.reply(w, http.StatusOK, got.toJSON())
	return nil
}

func (q *Queue) deleteIndexedTask(w http.ResponseWriter, rq *apiRequest) error {
	path := rq.params["namespace"]
	q.mu.Lock()
	defer q.mu.Unlock()
	t := q.begin(rq.r.Context())
	t.deleted = append(t.deleted, path)
	if err := t.commit(); err != nil {
		return err
	}
	q.log.Info("task removed from the index", "namespace", path)
	q.reply(w, http.StatusOK, struct{}{})
	return nil
}

// page collects one page of live items: fetch returns up to n stored items
// after the given key (in key order) with their keys; expired ones are
// skipped. The continuation token names the last key of the page when more
// items may follow.
func page[R any](rq *apiRequest, fetch func(after string, n int) ([]R, error), key func(R) string, live func(R) bool) ([]R, string, error) {
	limit, after, err := pageParams(rq)
	if err != nil {
		return nil, "", err
	}
	out := []R{}
	for len(out) < limit {
		need := limit - len(out)
		batch, err := fetch(after, need)
		if err != nil {
			return nil, "", err
		}
		for _, r := range batch {
			after = key(r)
			if live(r) {
				out = append(out, r)
			}
		}
		if len(batch) < need {
			return out, "", nil
		}
	}
	more, err := fetch(after, 1)
	if err != nil {
		return nil, "", err
	}
	if len(more) == 0 {
		return out, "", nil
	}
	return out, pageToken(after), nil
}

func (q *Queue) listNamespaces(w http.ResponseWriter, rq *apiRequest) error {
	parent := indexPathOf(rq, "namespace")
	ctx := rq.r.Context()
	nss, token, err := page(rq,
		func(after string, n int) ([]*NamespaceRecord, error) {
			return q.store.Namespaces(ctx, parent, after, n)
		},
		func(n *NamespaceRecord) string { _, name := splitPath(n.Path); return name },
		func(n *NamespaceRecord) bool { return n.Expires.After(rq.now) })
	if err != nil {
		return err
	}
	out := struct {
		Namespaces        []namespaceJSON `json:"namespaces"`
		ContinuationToken string          `json:"continuationToken,omitempty"`
	}{Namespaces: make([]namespaceJSON, len(nss)), ContinuationToken: token}
	for i, n := range nss {
		_, name := splitPath(n.Path)
		out.Namespaces[i] = namespaceJSON{Namespace: n.Path, Name: name, Expires: formatTime(n.Expires)}
	}
	q.reply(w, http.StatusOK, out)
	return nil
}

type listIndexedResponse struct {
	Tasks             []indexedTaskJSON `json:"tasks"`
	ContinuationToken string            `json:"continuationToken,omitempty"`
}

func indexedResponse(recs []*IndexedTaskRecord, token string) listIndexedResponse {
	out := listIndexedResponse{Tasks: make([]indexedTaskJSON, len(recs)), ContinuationToken: token}
	for i, r := range recs {
		out.Tasks[i] = r.toJSON()
	}
	return out
}

func (q *Queue) listIndexedTasks(w http.ResponseWriter, rq *apiRequest) error {
	ns := indexPathOf(rq, "namespace")
	ctx := rq.r.Context()
	recs, token, err := page(rq,
		func(after string, n int) ([]*IndexedTaskRecord, error) {
			return q.store.IndexedTasks(ctx, ns, after, n)
		},
		func(r *IndexedTaskRecord) string { _, name := splitPath(r.Path); return name },
		func(r *IndexedTaskRecord) bool { return r.Expires.After(rq.now) })
	if err != nil {
		return err
	}
	q.reply(w, http.StatusOK, indexedResponse(recs, token))
	return nil
}

// findTasksAtIndex answers the live entries at the given index paths, in
// the order given; the continuation token is the position to go on from.
func (q *Queue) findTasksAtIndex(w http.ResponseWriter, rq *apiRequest) error {
	var in struct {
		Indexes []string `json:"indexes"`
	}
	if err := decodeBody(rq, findTasksAtIndexInput, &in); err != nil {
		return err
	}
	if in.Indexes == nil {
		in.Indexes = []string{}
	}
	if err := rq.authorize(map[string]any{"indexPaths": in.Indexes}); err != nil {
		return err
	}
	ctx := rq.r.Context()
	type pos struct {
		i   int
		rec *IndexedTaskRecord
	}
	recs, token, err := page(rq,
		func(after string, n int) ([]pos, error) {
			start := 0
			if after != "" {
				if _, err := fmt.Sscanf(after, "%d", &start); err != nil {
					return nil, apiErrorf(codeInvalidRequestArguments, "continuationToken is not valid")
				}
				start++
			}
			var out []pos
			for i := start; i < len(in.Indexes) && len(out) < n; i++ {
				r, err := q.store.IndexedTask(ctx, in.Indexes[i])
				if errors.Is(err, ErrNotFound) {
					r = nil
				} else if err != nil {
					return nil, err
				}
				out = append(out, pos{i, r})
			}
			return out, nil
		},
		func(p pos) string { return fmt.Sprint(p.i) },
		func(p pos) bool { return p.rec != nil && p.rec.Expires.After(rq.now) })
	if err != nil {
		return err
	}
	found := make([]*IndexedTaskRecord, len(recs))
	for i, p := range recs {
		found[i] = p.rec
	}
	q.reply(w, http.StatusOK, indexedResponse(found, token))
	return nil
}
