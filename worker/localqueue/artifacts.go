package localqueue

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.dockerworker.dev/docker-worker/worker/localqueue/internal/hawkserver"
	"go.dockerworker.dev/docker-worker/worker/slugid"
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
	// getURLLifetime is how long the storage URL of a download is valid.
	getURLLifetime = 30 * time.Minute
	// uploadCredentialsLifetime bounds the object upload credentials of an
	// object artifact (also bounded by the artifact's expiry).
	uploadCredentialsLifetime = 24 * time.Hour
	// downloadCredentialsLifetime is how long the object download
	// credentials of artifact-content answers last.
	downloadCredentialsLifetime = time.Hour
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
	a = ArtifactRecord{
		Name:          name,
		StorageType:   in.StorageType,
		ContentType:   in.ContentType,
		ContentLength: in.ContentLength,
		Expires:       expires.UTC().Truncate(time.Millisecond),
		URL:           in.URL,
		Link:          in.Artifact,
		Reason:        in.Reason,
		Message:       in.Message,
	}
	if a.ContentType == "" {
		a.ContentType = defaultArtifactContentType
	}
	return a, nil
}

// compatible reports whether an existing artifact may be re-created as
// next, by the real queue's rules: the content type stays (links have none
// to keep), expires may be extended but not shortened, and the
// type-specific values stay, except that a reference may change its URL or
// become a link.
func compatible(old, next ArtifactRecord) bool {
	if next.StorageType != storageLink && old.ContentType != next.ContentType {
		return false
	}
	if old.Expires.After(next.Expires) {
		return false
	}
	if old.StorageType != next.StorageType {
		return old.StorageType == storageReference && next.StorageType == storageLink
	}
	switch old.StorageType {
	case storageReference:
		return true
	case storageLink:
		return old.Link == next.Link
	case storageError:
		return old.Reason == next.Reason && old.Message == next.Message
	case storageObject:
		return !old.Present // an unfinished upload may be asked for again
	}
	return true // s3: the key is fixed by the name
}

type postArtifactS3Response struct {
	StorageType string `json:"storageType"`
	PutURL      string `json:"putUrl"`
	Expires     string `json:"expires"`
	ContentType string `json:"contentType"`
}

type postArtifactObjectResponse struct {
	StorageType string          `json:"storageType"`
	Name        string          `json:"name"`
	ProjectID   string          `json:"projectId"`
	UploadID    string          `json:"uploadId"`
	Expires     string          `json:"expires"`
	Credentials credentialsJSON `json:"credentials"`
}

type postArtifactResponse struct {
	StorageType string `json:"storageType"`
}

// s3Key is the storage key of an s3 artifact, as the real queue's prefix.
func s3Key(taskID string, runID int, name string) string {
	return taskID + "/" + strconv.Itoa(runID) + "/" + name
}

// objectName is the object service name of an object artifact.
func objectName(taskID string, runID int, name string) string {
	return "t/" + s3Key(taskID, runID, name)
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
	rec, err := q.store.Get(ctx, rq.params["taskId"])
	if errors.Is(err, ErrNotFound) {
		return apiErrorf(codeInputError, "Task not found")
	} else if err != nil {
		return err
	}
	runID, _ := strconv.Atoi(rq.params["runId"])
	if runID >= len(rec.Runs) {
		return apiErrorf(codeInputError, "Run not found")
	}
	r := &rec.Runs[runID]
	if r.WorkerGroup == "" || r.WorkerID == "" {
		return apiErrorf(codeInputError, "Run was not claimed by a worker and so no artifacts can exist")
	}
	if err := rq.authorize(nil); err != nil {
		return err
	}
	if taskExpires := mustTime(rec.Task.Expires); art.Expires.After(taskExpires) {
		return apiErrorf(codeInputError, "Artifact expires (%s) after the task expiration %s (task.expires < expires) - this is not allowed, artifacts may not expire after the task they belong to expires", formatTime(art.Expires), rec.Task.Expires)
	}
	if r.State != stateRunning && (r.State != stateException || !r.Resolved.After(rq.now.Add(-artifactGrace))) {
		return apiErrorf(codeRequestConflict, "Artifacts cannot be created for a task after it is resolved, unless it is resolved 'exception', and even in this case only up to 25 min past resolution. Run %d of task `%s` is %s.", runID, rec.TaskID, r.State)
	}
	var old ArtifactRecord
	exists := false
	switch prev, err := q.store.Artifact(ctx, rec.TaskID, runID, name); {
	case err == nil:
		old, exists = *prev, true
	case !errors.Is(err, ErrNotFound):
		return err
	}
	if exists && !compatible(old, art) {
		return apiErrorf(codeRequestConflict, "Artifact already exists with different properties, and none of the allowed exceptions apply: storageType %s, contentType %s, expires %s", old.StorageType, old.ContentType, formatTime(old.Expires))
	}
	t := q.begin(ctx)
	art.Present = art.StorageType != storageObject
	if art.StorageType == storageObject {
		art.UploadID = slugid.Nice()
		if exists {
			art.UploadID = old.UploadID
		}
		t.objects = append(t.objects, &ObjectRecord{
			Name: objectName(rec.TaskID, runID, name), ProjectID: rec.Task.ProjectID,
			UploadID: art.UploadID, Expires: art.Expires,
		})
	}
	// Only the artifact's own record changes: the cost of a create does
	// not grow with the number of artifacts the run has.
	art.TaskID, art.RunID = rec.TaskID, runID
	t.artifacts = append(t.artifacts, &art)
	if art.Present && art.StorageType != storageS3 {
		t.msg(msgArtifactCreated(rec, runID, art)) // s3 artifacts are not announced, as on the real queue
	}
	if err := t.commit(); err != nil {
		return err
	}
	q.log.Debug("artifact created", "taskId", rec.TaskID, "runId", runID, "name", name, "storageType", art.StorageType)

	switch art.StorageType {
	case storageS3:
		expiry := rq.now.Add(putURLLifetime)
		putURL, err := q.blobs.PutURL(ctx, s3Key(rec.TaskID, runID, name), BlobHeaders{ContentType: art.ContentType}, expiry.Add(10*time.Second))
		if err != nil {
			return fmt.Errorf("presign upload of %s: %w", name, err)
		}
		q.reply(w, http.StatusOK, postArtifactS3Response{StorageType: storageS3, PutURL: putURL, Expires: formatTime(expiry), ContentType: art.ContentType})
	case storageObject:
		oname := objectName(rec.TaskID, runID, name)
		clientID := fmt.Sprintf("artifact-upload/%s/%d/on/%s/%s", rec.TaskID, runID, r.WorkerGroup, r.WorkerID)
		expiry := rq.now.Add(uploadCredentialsLifetime)
		if art.Expires.Before(expiry) {
			expiry = art.Expires
		}
		creds, err := hawkserver.IssueTemporaryCredentials(issuerClientID, q.issuerToken, clientID,
			[]string{"object:upload:" + rec.Task.ProjectID + ":" + oname}, rq.now, expiry)
		if err != nil {
			return fmt.Errorf("upload credentials for %s: %w", name, err)
		}
		q.reply(w, http.StatusOK, postArtifactObjectResponse{
			StorageType: storageObject, Name: oname, ProjectID: rec.Task.ProjectID, UploadID: art.UploadID,
			Expires: formatTime(art.Expires), Credentials: credentialsJSON{creds.ClientID, creds.AccessToken, creds.Certificate},
		})
	default:
		q.reply(w, http.StatusOK, postArtifactResponse{StorageType: art.StorageType})
	}
	return nil
}

const finishArtifactSchema = "/schemas/queue/v1/finish-artifact-request.json#"

// finishArtifact marks an object artifact present once its object is
// uploaded and finished; repeating it announces the artifact again.
func (q *Queue) finishArtifact(w http.ResponseWriter, rq *apiRequest) error {
	var in struct {
		UploadID *string `json:"uploadId"`
	}
	if err := decodeBody(rq, finishArtifactSchema, &in); err != nil {
		return err
	}
	if in.UploadID == nil || !slugPattern.MatchString(*in.UploadID) {
		return invalidInput(finishArtifactSchema, "uploadId is required and must be a slugid")
	}
	ctx := rq.r.Context()
	name := rq.params["name"]
	q.mu.Lock()
	defer q.mu.Unlock()
	rec, err := q.store.Get(ctx, rq.params["taskId"])
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	runID, _ := strconv.Atoi(rq.params["runId"])
	var art *ArtifactRecord
	if rec != nil && runID < len(rec.Runs) {
		art, err = q.store.Artifact(ctx, rec.TaskID, runID, name)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	if art == nil {
		return apiErrorf(codeResourceNotFound, "Artifact with taskId `%s`, runId %s, name `%s` not found", rq.params["taskId"], rq.params["runId"], name)
	}
	if art.StorageType != storageObject {
		return apiErrorf(codeInputError, "Only object artifacts can be finished")
	}
	t := q.begin(ctx)
	if !art.Present {
		if *in.UploadID != art.UploadID {
			return apiErrorf(codeInputError, "given uploadId does not match that for the artifact")
		}
		o, err := q.store.Object(ctx, objectName(rec.TaskID, runID, name))
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if o == nil || !o.Finished {
			return apiErrorf(codeInputError, "Object storing artifact data does not exist")
		}
		art.Present, art.UploadID = true, ""
		t.artifacts = append(t.artifacts, art)
	}
	t.msg(msgArtifactCreated(rec, runID, *art))
	if err := t.commit(); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
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
	rec, runID, err := q.loadRun(rq)
	if err != nil {
		return err
	}
	return q.serveArtifact(w, rq, rec, runID, form)
}

func (q *Queue) artifactOfLatestRun(w http.ResponseWriter, rq *apiRequest, form artifactForm) error {
	if form != formInfo {
		// Check permission before possibly answering 404 for the task or run.
		if err := rq.authorize(map[string]any{"names": []string{rq.params["name"]}}); err != nil {
			return err
		}
	}
	rec, err := q.loadTask(rq)
	if err != nil {
		return err
	}
	if len(rec.Runs) == 0 {
		return apiErrorf(codeResourceNotFound, "Task doesn't have any runs")
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

type objectArtifactContent struct {
	StorageType string          `json:"storageType"`
	Name        string          `json:"name"`
	Credentials credentialsJSON `json:"credentials"`
}

// serveArtifact answers for the artifact named in the request, following
// links (except for formInfo) and checking `queue:get-artifact:<name>` for
// every name on the way.
func (q *Queue) serveArtifact(w http.ResponseWriter, rq *apiRequest, rec *TaskRecord, runID int, form artifactForm) error {
	ctx := rq.r.Context()
	name := rq.params["name"]
	var names []string
	var a *ArtifactRecord
	for {
		names = append(names, name)
		if form != formInfo {
			if err := rq.authorize(map[string]any{"names": names}); err != nil {
				return err
			}
		}
		var err error
		a, err = q.store.Artifact(ctx, rec.TaskID, runID, name)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if a == nil || !a.Present {
			return apiErrorf(codeResourceNotFound, "Artifact not found")
		}
		if form == formInfo {
			q.reply(w, http.StatusOK, artifactToJSON(*a))
			return nil
		}
		if a.Expires.Before(rq.now) {
			return apiErrorf(codeResourceExpired, "Artifact expired")
		}
		if a.StorageType != storageLink {
			break
		}
		if slices.Contains(names, a.Link) {
			return apiErrorf(codeInputError, "Artifact leads to a link cycle")
		}
		name = a.Link
	}
	var target string
	var err error
	switch a.StorageType {
	case storageS3:
		target, err = q.blobs.GetURL(ctx, s3Key(rec.TaskID, runID, name), rq.now.Add(getURLLifetime))
	case storageObject:
		oname := objectName(rec.TaskID, runID, name)
		if form == formContent {
			creds, err := hawkserver.IssueTemporaryCredentials(issuerClientID, q.issuerToken,
				fmt.Sprintf("artifact-download/%s/%d/%s", rec.TaskID, runID, name),
				[]string{"object:download:" + oname}, rq.now, rq.now.Add(downloadCredentialsLifetime))
			if err != nil {
				return fmt.Errorf("download credentials for %s: %w", name, err)
			}
			q.reply(w, http.StatusOK, objectArtifactContent{StorageType: a.StorageType, Name: oname, Credentials: credentialsJSON{creds.ClientID, creds.AccessToken, creds.Certificate}})
			return nil
		}
		target, err = q.blobs.GetURL(ctx, oname, rq.now.Add(getURLLifetime))
	case storageReference:
		target = a.URL
	case storageError:
	default:
		return fmt.Errorf("artifact %s of %s/%d has unknown storageType %q", name, rec.TaskID, runID, a.StorageType)
	}
	if err != nil {
		return fmt.Errorf("download URL of %s: %w", name, err)
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
	rec, err := q.loadTask(rq)
	if err != nil {
		return err
	}
	runID, err := strconv.Atoi(rq.params["runId"])
	if err != nil || runID >= len(rec.Runs) {
		return apiErrorf(codeResourceNotFound, "Task with taskId: `%s` has no run with runId: %s", rec.TaskID, rq.params["runId"])
	}
	return q.replyArtifactList(w, rq, rec.TaskID, runID)
}

func (q *Queue) listLatestArtifacts(w http.ResponseWriter, rq *apiRequest) error {
	rec, err := q.loadTask(rq)
	if err != nil {
		return err
	}
	if len(rec.Runs) == 0 {
		return apiErrorf(codeResourceNotFound, "Task doesn't have any runs")
	}
	return q.replyArtifactList(w, rq, rec.TaskID, len(rec.Runs)-1)
}

// replyArtifactList answers one page of the present artifacts of run
// runID of taskID, in name order. The continuationToken names the last
// artifact of the page.
func (q *Queue) replyArtifactList(w http.ResponseWriter, rq *apiRequest, taskID string, runID int) error {
	limit, after, err := pageParams(rq)
	if err != nil {
		return err
	}
	// Read limit+1 present artifacts (to know whether a page follows),
	// skipping the unfinished object artifacts on the way.
	var page []*ArtifactRecord
	for len(page) <= limit {
		want := limit + 1 - len(page)
		arts, err := q.store.Artifacts(rq.r.Context(), taskID, runID, after, want)
		if err != nil {
			return err
		}
		for _, a := range arts {
			if a.Present {
				page = append(page, a)
			}
		}
		if len(arts) < want {
			break
		}
		after = arts[len(arts)-1].Name
	}
	resp := listArtifactsResponse{Artifacts: []artifactJSON{}}
	if len(page) > limit {
		page = page[:limit]
		resp.ContinuationToken = pageToken(page[limit-1].Name)
	}
	for _, a := range page {
		resp.Artifacts = append(resp.Artifacts, artifactToJSON(*a))
	}
	q.reply(w, http.StatusOK, resp)
	return nil
}

// Task queue counts.

func (q *Queue) queueCounts(queueID string) (pending, claimed int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, a := range q.active {
		switch {
		case a.queueID != queueID:
		case a.pending:
			pending++
		case !a.takenUntil.IsZero():
			claimed++
		}
	}
	return pending, claimed
}

type queueCountsJSON struct {
	ProvisionerID string `json:"provisionerId"`
	WorkerType    string `json:"workerType"`
	TaskQueueID   string `json:"taskQueueId"`
	PendingTasks  int    `json:"pendingTasks"`
	ClaimedTasks  *int   `json:"claimedTasks,omitempty"`
}

func (q *Queue) pendingTasks(w http.ResponseWriter, rq *apiRequest) error {
	id := rq.params["taskQueueId"]
	prov, wt, _ := strings.Cut(id, "/")
	pending, _ := q.queueCounts(id)
	q.reply(w, http.StatusOK, queueCountsJSON{ProvisionerID: prov, WorkerType: wt, TaskQueueID: id, PendingTasks: pending})
	return nil
}

func (q *Queue) taskQueueCounts(w http.ResponseWriter, rq *apiRequest) error {
	id := rq.params["taskQueueId"]
	prov, wt, _ := strings.Cut(id, "/")
	pending, claimed := q.queueCounts(id)
	q.reply(w, http.StatusOK, queueCountsJSON{ProvisionerID: prov, WorkerType: wt, TaskQueueID: id, PendingTasks: pending, ClaimedTasks: &claimed})
	return nil
}
