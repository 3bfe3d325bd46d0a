package localqueue

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

const postArtifactSchema = "/schemas/queue/v1/post-artifact-request.json#"

const (
	storageS3        = "s3"
	storageReference = "reference"
	storageLink      = "link"
	storageError     = "error"
	storageObject    = "object"

	defaultArtifactContentType = "application/binary"
	// artifactGrace is how long after an exception resolution artifacts may
	// still be created (so a worker can upload logs after reporting).
	artifactGrace = 25 * time.Minute
	// putURLLifetime is how long an s3 putUrl is valid.
	putURLLifetime = 45 * time.Minute
	// maxLinkHops bounds how many links getArtifact follows.
	maxLinkHops = 50
)

// artifactFields lists, per storageType, the properties a request may have
// and which of them are required (post-artifact-request.json).
var artifactFields = map[string]struct{ allowed, required []string }{
	storageS3:        {[]string{"storageType", "expires", "contentType", "contentLength"}, []string{"storageType", "expires", "contentType"}},
	storageObject:    {[]string{"storageType", "expires", "contentType", "contentLength"}, []string{"storageType", "expires", "contentType"}},
	storageReference: {[]string{"storageType", "expires", "url", "contentType"}, []string{"storageType", "expires", "url", "contentType"}},
	storageLink:      {[]string{"storageType", "expires", "artifact", "contentType"}, []string{"storageType", "expires", "artifact"}},
	storageError:     {[]string{"storageType", "expires", "reason", "message"}, []string{"storageType", "expires", "reason", "message"}},
}

var errorArtifactReasons = []string{"file-missing-on-worker", "invalid-resource-on-worker", "too-large-file-on-worker", "file-not-readable-on-worker"}

type postArtifactRequest struct {
	StorageType   string `json:"storageType"`
	Expires       string `json:"expires"`
	ContentType   string `json:"contentType"`
	ContentLength *int64 `json:"contentLength"`
	URL           string `json:"url"`
	Artifact      string `json:"artifact"`
	Reason        string `json:"reason"`
	Message       string `json:"message"`
}

// parseArtifactRequest checks the body against post-artifact-request.json
// and returns the artifact it describes.
func parseArtifactRequest(rq *apiRequest, name string) (ArtifactRecord, error) {
	var a ArtifactRecord
	var fields map[string]json.RawMessage
	if err := decodeBody(rq, postArtifactSchema, &fields); err != nil {
		return a, err
	}
	var in postArtifactRequest
	if err := decodeBody(rq, postArtifactSchema, &in); err != nil {
		return a, err
	}
	spec, ok := artifactFields[in.StorageType]
	if !ok {
		return a, invalidInput(postArtifactSchema, "storageType must be one of `s3`, `object`, `reference`, `link`, `error`")
	}
	var problems []string
	for k := range fields {
		if !slices.Contains(spec.allowed, k) {
			problems = append(problems, fmt.Sprintf("property %s is not allowed for storageType %s", k, in.StorageType))
		}
	}
	for _, k := range spec.required {
		if _, ok := fields[k]; !ok {
			problems = append(problems, fmt.Sprintf("%s is required for storageType %s", k, in.StorageType))
		}
	}
	expires, err := parseTime(in.Expires)
	if _, given := fields["expires"]; given && err != nil {
		problems = append(problems, fmt.Sprintf("expires %q must be a date-time", in.Expires))
	}
	if len(in.ContentType) > 255 {
		problems = append(problems, "contentType must be at most 255 characters long")
	}
	if in.ContentLength != nil && *in.ContentLength < 0 {
		problems = append(problems, "contentLength must not be negative")
	}
	switch in.StorageType {
	case storageReference:
		if u, err := url.Parse(in.URL); err != nil || !u.IsAbs() {
			problems = append(problems, fmt.Sprintf("url %q must be an absolute URI", in.URL))
		}
	case storageError:
		if !slices.Contains(errorArtifactReasons, in.Reason) {
			problems = append(problems, "reason must be one of "+joinQuoted(errorArtifactReasons))
		}
		if len(in.Message) > 4096 {
			problems = append(problems, "message must be at most 4096 characters long")
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return a, invalidInput(postArtifactSchema, problems...)
	}
	if in.StorageType == storageObject {
		return a, apiErrorf(codeInputError, "storageType `object` needs the object service, which the embedded queue does not provide; use `s3`")
	}
	a = ArtifactRecord{
		Name:        name,
		StorageType: in.StorageType,
		ContentType: in.ContentType,
		Expires:     expires.UTC().Truncate(time.Millisecond),
		URL:         in.URL,
		Link:        in.Artifact,
		Reason:      in.Reason,
		Message:     in.Message,
	}
	if a.ContentType == "" {
		a.ContentType = defaultArtifactContentType
	}
	return a, nil
}

// replaceable reports whether an existing artifact may be re-created as
// next: identical values (idempotency), a reference replaced by a reference
// or a link, or any change that extends expires — the real queue's rules.
func replaceable(old, next ArtifactRecord) bool {
	switch {
	case sameArtifact(old, next):
		return true
	case old.StorageType == storageReference && (next.StorageType == storageReference || next.StorageType == storageLink):
		return true
	}
	return old.Expires.Before(next.Expires)
}

func sameArtifact(a, b ArtifactRecord) bool {
	ae, be := a.Expires, b.Expires
	a.Expires, b.Expires = time.Time{}, time.Time{}
	return a == b && ae.Equal(be)
}

type postArtifactS3Response struct {
	StorageType string `json:"storageType"`
	PutURL      string `json:"putUrl"`
	Expires     string `json:"expires"`
	ContentType string `json:"contentType"`
}

type postArtifactResponse struct {
	StorageType string `json:"storageType"`
}

func (q *Queue) createArtifact(w http.ResponseWriter, rq *apiRequest) error {
	name := rq.params["name"]
	art, err := parseArtifactRequest(rq, name)
	if err != nil {
		return err
	}
	if art.Expires.Before(rq.now.Add(-maxClockSkew)) {
		return apiErrorf(codeInputError, "Expires must be in the future")
	}
	ctx := rq.r.Context()
	q.mu.Lock()
	defer q.mu.Unlock()
	rec, runID, err := q.loadRun(rq)
	if err != nil {
		if ae, ok := errors.AsType[*apiError](err); ok && ae.code == codeResourceNotFound {
			ae.code = codeInputError // as the real queue answers createArtifact
		}
		return err
	}
	r := &rec.Runs[runID]
	if r.WorkerGroup == "" || r.WorkerID == "" {
		return apiErrorf(codeInputError, "Run was not claimed by a worker and so no artifacts can exist")
	}
	if taskExpires := mustTime(rec.Task.Expires); art.Expires.After(taskExpires) {
		return apiErrorf(codeInputError, "Artifact expires (%s) after the task expiration %s (task.expires < expires) - this is not allowed, artifacts may not expire after the task they belong to expires", formatTime(art.Expires), rec.Task.Expires)
	}
	if r.State != stateRunning && (r.State != stateException || !r.Resolved.After(rq.now.Add(-artifactGrace))) {
		return apiErrorf(codeRequestConflict, "Artifacts cannot be created for a task after it is resolved, unless it is resolved 'exception', and even in this case only up to 25 min past resolution. Run %d of task `%s` is %s.", runID, rec.TaskID, r.State)
	}
	if old, ok := r.Artifacts[name]; ok && !replaceable(old, art) {
		return apiErrorf(codeRequestConflict, "Artifact already exists with different properties, and none of the allowed exceptions apply: storageType %s, contentType %s, expires %s", old.StorageType, old.ContentType, formatTime(old.Expires))
	}
	if r.Artifacts == nil {
		r.Artifacts = map[string]ArtifactRecord{}
	}
	r.Artifacts[name] = art
	if err := q.store.Update(ctx, rec); err != nil {
		return err
	}
	q.log.Debug("artifact created", "taskId", rec.TaskID, "runId", runID, "name", name, "storageType", art.StorageType)
	if art.StorageType != storageS3 {
		q.reply(w, http.StatusOK, postArtifactResponse{StorageType: art.StorageType})
		return nil
	}
	expiry := rq.now.Add(putURLLifetime)
	q.reply(w, http.StatusOK, postArtifactS3Response{
		StorageType: storageS3,
		PutURL:      q.blobURL(blobToken{TaskID: rec.TaskID, RunID: runID, Name: name, Op: blobPut, Expires: expiry.Add(10 * time.Second).UnixMilli()}),
		Expires:     formatTime(expiry),
		ContentType: art.ContentType,
	})
	return nil
}

// artifactForm is how an artifact endpoint answers.
type artifactForm int

const (
	formRedirect artifactForm = iota // getArtifact: 303 to the content (424 for errors)
	formContent                      // artifact: JSON telling where the content is
	formInfo                         // artifactInfo: the artifact's metadata, links not followed
)

func (q *Queue) getArtifact(w http.ResponseWriter, rq *apiRequest) error {
	return q.artifactOfRun(w, rq, formRedirect)
}

func (q *Queue) getLatestArtifact(w http.ResponseWriter, rq *apiRequest) error {
	return q.artifactOfLatestRun(w, rq, formRedirect)
}

func (q *Queue) artifactContent(w http.ResponseWriter, rq *apiRequest) error {
	return q.artifactOfRun(w, rq, formContent)
}

func (q *Queue) latestArtifactContent(w http.ResponseWriter, rq *apiRequest) error {
	return q.artifactOfLatestRun(w, rq, formContent)
}

func (q *Queue) artifactInfo(w http.ResponseWriter, rq *apiRequest) error {
	return q.artifactOfRun(w, rq, formInfo)
}

func (q *Queue) latestArtifactInfo(w http.ResponseWriter, rq *apiRequest) error {
	return q.artifactOfLatestRun(w, rq, formInfo)
}

func (q *Queue) artifactOfRun(w http.ResponseWriter, rq *apiRequest, form artifactForm) error {
	q.mu.Lock()
	rec, runID, err := q.loadRun(rq)
	q.mu.Unlock()
	if err != nil {
		return err
	}
	return q.serveArtifact(w, rq, rec, runID, form)
}

func (q *Queue) artifactOfLatestRun(w http.ResponseWriter, rq *apiRequest, form artifactForm) error {
	q.mu.Lock()
	rec, err := q.loadTask(rq)
	q.mu.Unlock()
	if err != nil {
		return err
	}
	if len(rec.Runs) == 0 {
		return apiErrorf(codeResourceNotFound, "Task `%s` has no runs.", rec.TaskID)
	}
	return q.serveArtifact(w, rq, rec, len(rec.Runs)-1, form)
}

type getArtifactResponse struct {
	StorageType string `json:"storageType"`
	URL         string `json:"url"`
}

type errorArtifactContent struct {
	StorageType string `json:"storageType"`
	Reason      string `json:"reason"`
	Message     string `json:"message"`
}

// serveArtifact answers for the artifact named in the request, following
// links (except for formInfo).
func (q *Queue) serveArtifact(w http.ResponseWriter, rq *apiRequest, rec *TaskRecord, runID int, form artifactForm) error {
	name := rq.params["name"]
	arts := rec.Runs[runID].Artifacts
	var seen []string
	for {
		a, ok := arts[name]
		if !ok {
			return apiErrorf(codeResourceNotFound, "Artifact `%s` not found on run %d of task `%s`.", name, runID, rec.TaskID)
		}
		if a.StorageType != storageLink || form == formInfo {
			break
		}
		seen = append(seen, name)
		if slices.Contains(seen, a.Link) || len(seen) > maxLinkHops {
			return apiErrorf(codeInputError, "Link artifacts form a cycle (or a chain longer than %d): %s", maxLinkHops, strings.Join(append(seen, a.Link), " → "))
		}
		name = a.Link
	}
	a := arts[name]
	if form == formInfo {
		q.reply(w, http.StatusOK, artifactToJSON(a))
		return nil
	}
	var target string
	switch a.StorageType {
	case storageS3:
		target = q.blobURL(blobToken{TaskID: rec.TaskID, RunID: runID, Name: name, Op: blobGet, Expires: a.Expires.UnixMilli()})
	case storageReference:
		target = a.URL
	case storageError:
	default:
		return fmt.Errorf("artifact %s of %s/%d has unknown storageType %q", name, rec.TaskID, runID, a.StorageType)
	}
	switch {
	case form == formContent && a.StorageType == storageError:
		q.reply(w, http.StatusOK, errorArtifactContent{StorageType: a.StorageType, Reason: a.Reason, Message: a.Message})
	case form == formContent:
		q.reply(w, http.StatusOK, getArtifactResponse{StorageType: a.StorageType, URL: target})
	case a.StorageType == storageError:
		w.Header().Set("x-taskcluster-artifact-storage-type", a.StorageType)
		q.reply(w, http.StatusFailedDependency, map[string]string{"reason": a.Reason, "message": a.Message})
	default:
		w.Header().Set("x-taskcluster-artifact-storage-type", a.StorageType)
		w.Header().Set("Location", target)
		q.reply(w, http.StatusSeeOther, getArtifactResponse{StorageType: a.StorageType, URL: target})
	}
	return nil
}

func (q *Queue) listArtifacts(w http.ResponseWriter, rq *apiRequest) error {
	q.mu.Lock()
	rec, runID, err := q.loadRun(rq)
	q.mu.Unlock()
	if err != nil {
		return err
	}
	return q.replyArtifactList(w, rq, rec.Runs[runID].Artifacts)
}

func (q *Queue) listLatestArtifacts(w http.ResponseWriter, rq *apiRequest) error {
	q.mu.Lock()
	rec, err := q.loadTask(rq)
	q.mu.Unlock()
	if err != nil {
		return err
	}
	if len(rec.Runs) == 0 {
		return apiErrorf(codeResourceNotFound, "Task `%s` has no runs.", rec.TaskID)
	}
	return q.replyArtifactList(w, rq, rec.Runs[len(rec.Runs)-1].Artifacts)
}

// replyArtifactList answers one page of artifacts, in name order. The
// continuationToken names the last artifact of the page.
func (q *Queue) replyArtifactList(w http.ResponseWriter, rq *apiRequest, arts map[string]ArtifactRecord) error {
	query := rq.r.URL.Query()
	limit := 1000
	if s := query.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return apiErrorf(codeInvalidRequestArguments, "limit %q must be a positive integer", s)
		}
		limit = min(n, 1000)
	}
	after := ""
	if tok := query.Get("continuationToken"); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || len(b) == 0 {
			return apiErrorf(codeInvalidRequestArguments, "continuationToken %q is not valid", tok)
		}
		after = string(b)
	}
	names := make([]string, 0, len(arts))
	for n := range arts {
		if n > after {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	resp := listArtifactsResponse{Artifacts: []artifactJSON{}}
	if len(names) > limit {
		names = names[:limit]
		resp.ContinuationToken = base64.RawURLEncoding.EncodeToString([]byte(names[limit-1]))
	}
	for _, n := range names {
		resp.Artifacts = append(resp.Artifacts, artifactToJSON(arts[n]))
	}
	q.reply(w, http.StatusOK, resp)
	return nil
}
