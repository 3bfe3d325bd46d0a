package localqueue

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"mime"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"time"
)

// The object service (<rootUrl>/api/object/v1): the part object artifacts
// need. An upload is negotiated with createUpload (putUrl or dataInline),
// the bytes go to the BlobStore, finishUpload makes the object immutable,
// and startDownload / download hand out its storage URL.

const (
	createUploadSchema  = "/schemas/object/v1/create-upload-request.json#"
	finishUploadSchema  = "/schemas/object/v1/finish-upload-request.json#"
	startDownloadSchema = "/schemas/object/v1/download-object-request.json#"
	// maxInlineBytes bounds dataInline uploads (the schema bounds the
	// base64 text to 10926 characters).
	maxInlineBytes = 8192
)

var (
	hashPatterns = map[string]*regexp.Regexp{
		"sha256": regexp.MustCompile(`^[a-z0-9]{64}$`),
		"sha512": regexp.MustCompile(`^[a-z0-9]{128}$`),
	}
)

type createUploadRequest struct {
	ProjectID             *string           `json:"projectId"`
	UploadID              *string           `json:"uploadId"`
	Expires               *string           `json:"expires"`
	Hashes                map[string]string `json:"hashes"`
	ProposedUploadMethods *struct {
		DataInline *struct {
			ContentType *string `json:"contentType"`
			ObjectData  *string `json:"objectData"`
		} `json:"dataInline"`
		PutURL *struct {
			ContentType   *string `json:"contentType"`
			ContentLength *int64  `json:"contentLength"`
		} `json:"putUrl"`
	} `json:"proposedUploadMethods"`
}

func checkProjectID(p *string) []string {
	switch {
	case p == nil:
		return []string{"projectId is required"}
	case len(*p) < 1 || len(*p) > 500 || !projectIDPattern.MatchString(*p):
		return []string{fmt.Sprintf("projectId %q must be 1 to 500 of [a-zA-Z0-9._/-]", *p)}
	}
	return nil
}

func checkHashes(h map[string]string) []string {
	var p []string
	for algo, v := range h {
		if re, ok := hashPatterns[algo]; ok && !re.MatchString(v) {
			p = append(p, fmt.Sprintf("hashes.%s must match %s", algo, re))
		}
	}
	return p
}

// mergeHashes adds more to the object's hashes; a different value for an
// algorithm it already has conflicts.
func mergeHashes(o *ObjectRecord, more map[string]string) error {
	for algo, v := range more {
		if cur, ok := o.Hashes[algo]; ok && cur != v {
			return apiErrorf(codeRequestConflict, "Content hash already exists with a different value")
		}
	}
	if len(more) > 0 {
		if o.Hashes == nil {
			o.Hashes = map[string]string{}
		}
		maps.Copy(o.Hashes, more)
	}
	return nil
}

type putURLMethod struct {
	URL     string            `json:"url"`
	Expires string            `json:"expires"`
	Headers map[string]string `json:"headers"`
}

type uploadMethodJSON struct {
	DataInline *bool         `json:"dataInline,omitempty"`
	PutURL     *putURLMethod `json:"putUrl,omitempty"`
}

// objectHeaders are the headers an object of contentType is stored with.
// As the object service does on AWS S3, HTML gets `Content-Disposition:
// attachment` (browsers then download it rather than render it in the
// deployment's origin) when the bytes live in S3; with the queue's own
// local storage it gets none, as on the S3 emulations the object service
// supports without it.
func (q *Queue) objectHeaders(contentType string) BlobHeaders {
	h := BlobHeaders{ContentType: contentType}
	if mt, _, err := mime.ParseMediaType(contentType); err == nil && mt == "text/html" && q.local == nil {
		h.ContentDisposition = "attachment"
	}
	return h
}

// putURLHeaders are the headers a putUrl upload must carry, as the object
// service lists them: Content-Type, Content-Length, `Content-Encoding:
// identity` (objects are stored unencoded) and any Content-Disposition.
func putURLHeaders(h BlobHeaders, contentLength int64) map[string]string {
	m := map[string]string{
		"Content-Type":     h.ContentType,
		"Content-Length":   strconv.FormatInt(contentLength, 10),
		"Content-Encoding": "identity",
	}
	if h.ContentDisposition != "" {
		m["Content-Disposition"] = h.ContentDisposition
	}
	return m
}

func (q *Queue) createUpload(w http.ResponseWriter, rq *apiRequest) error {
	var in createUploadRequest
	if err := decodeBody(rq, createUploadSchema, &in); err != nil {
		return err
	}
	problems := checkProjectID(in.ProjectID)
	if in.UploadID == nil || !slugPattern.MatchString(*in.UploadID) {
		problems = append(problems, "uploadId is required and must be a slugid")
	}
	var expires time.Time
	if in.Expires == nil {
		problems = append(problems, "expires is required")
	} else if t, err := parseTime(*in.Expires); err != nil {
		problems = append(problems, fmt.Sprintf("expires %q must be a date-time", *in.Expires))
	} else {
		expires = t.UTC().Truncate(time.Millisecond)
	}
	problems = append(problems, checkHashes(in.Hashes)...)
	if in.ProposedUploadMethods == nil {
		problems = append(problems, "proposedUploadMethods is required")
	} else {
		if m := in.ProposedUploadMethods.DataInline; m != nil && (m.ContentType == nil || m.ObjectData == nil || len(*m.ObjectData) > 10926) {
			problems = append(problems, "proposedUploadMethods.dataInline needs contentType and objectData (at most 10926 characters)")
		}
		if m := in.ProposedUploadMethods.PutURL; m != nil && (m.ContentType == nil || m.ContentLength == nil) {
			problems = append(problems, "proposedUploadMethods.putUrl needs contentType and contentLength")
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return invalidInput(createUploadSchema, problems...)
	}
	name := rq.params["name"]
	if err := rq.authorize(map[string]any{"projectId": *in.ProjectID}); err != nil {
		return err
	}
	ctx := rq.r.Context()
	q.mu.Lock()
	defer q.mu.Unlock()
	o, err := q.store.Object(ctx, name)
	switch {
	case errors.Is(err, ErrNotFound):
		o = &ObjectRecord{Name: name, ProjectID: *in.ProjectID, UploadID: *in.UploadID, Expires: expires}
	case err != nil:
		return err
	case o.Finished || o.UploadID != *in.UploadID || o.ProjectID != *in.ProjectID || !o.Expires.Equal(expires):
		return apiErrorf(codeRequestConflict, "Object already exists")
	}
	if err := mergeHashes(o, in.Hashes); err != nil {
		return err
	}
	method := uploadMethodJSON{}
	switch pm := in.ProposedUploadMethods; {
	case pm.DataInline != nil:
		data, err := base64.StdEncoding.DecodeString(*pm.DataInline.ObjectData)
		if err != nil || len(data) > maxInlineBytes {
			return apiErrorf(codeInputError, "dataInline objectData must be base64 of at most %d bytes", maxInlineBytes)
		}
		if err := q.blobs.Put(ctx, name, q.objectHeaders(*pm.DataInline.ContentType), data); err != nil {
			return fmt.Errorf("store inline object %q: %w", name, err)
		}
		ok := true
		method.DataInline = &ok
	case pm.PutURL != nil:
		exp := rq.now.Add(putURLLifetime)
		hdr := q.objectHeaders(*pm.PutURL.ContentType)
		u, err := q.blobs.PutURL(ctx, name, hdr, exp)
		if err != nil {
			return fmt.Errorf("presign upload of object %q: %w", name, err)
		}
		method.PutURL = &putURLMethod{URL: u, Expires: formatTime(exp), Headers: putURLHeaders(hdr, *pm.PutURL.ContentLength)}
	}
	t := q.begin(ctx)
	t.objects = append(t.objects, o)
	if err := t.commit(); err != nil {
		return err
	}
	q.reply(w, http.StatusOK, struct {
		ProjectID    string           `json:"projectId"`
		UploadID     string           `json:"uploadId"`
		Expires      string           `json:"expires"`
		UploadMethod uploadMethodJSON `json:"uploadMethod"`
	}{o.ProjectID, o.UploadID, formatTime(o.Expires), method})
	return nil
}

func (q *Queue) finishUpload(w http.ResponseWriter, rq *apiRequest) error {
	var in struct {
		ProjectID *string           `json:"projectId"`
		UploadID  *string           `json:"uploadId"`
		Hashes    map[string]string `json:"hashes"`
	}
	if err := decodeBody(rq, finishUploadSchema, &in); err != nil {
		return err
	}
	problems := checkProjectID(in.ProjectID)
	if in.UploadID == nil || !slugPattern.MatchString(*in.UploadID) {
		problems = append(problems, "uploadId is required and must be a slugid")
	}
	problems = append(problems, checkHashes(in.Hashes)...)
	if len(problems) > 0 {
		slices.Sort(problems)
		return invalidInput(finishUploadSchema, problems...)
	}
	name := rq.params["name"]
	if err := rq.authorize(map[string]any{"projectId": *in.ProjectID}); err != nil {
		return err
	}
	ctx := rq.r.Context()
	q.mu.Lock()
	defer q.mu.Unlock()
	o, err := q.store.Object(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return apiErrorf(codeResourceNotFound, "Object %q not found", name)
	} else if err != nil {
		return err
	}
	if o.ProjectID != *in.ProjectID {
		return apiErrorf(codeInputError, "Object %q does not have projectId %s", name, *in.ProjectID)
	}
	if o.Finished {
		for algo, v := range in.Hashes {
			if cur, ok := o.Hashes[algo]; !ok || cur != v {
				return apiErrorf(codeRequestConflict, "Object %q is already finished, with other hashes", name)
			}
		}
		q.reply(w, http.StatusOK, struct{}{})
		return nil
	}
	if o.UploadID != *in.UploadID {
		return apiErrorf(codeRequestConflict, "Object %q does not have uploadId %s", name, *in.UploadID)
	}
	if err := mergeHashes(o, in.Hashes); err != nil {
		return err
	}
	if ok, err := q.blobs.Exists(ctx, name); err != nil {
		return err
	} else if !ok {
		return apiErrorf(codeInputError, "Object %q has no data: upload it before finishing the upload", name)
	}
	o.Finished = true
	t := q.begin(ctx)
	t.objects = append(t.objects, o)
	if err := t.commit(); err != nil {
		return err
	}
	q.reply(w, http.StatusOK, struct{}{})
	return nil
}

// finishedObject loads an object that can be downloaded.
func (q *Queue) finishedObject(rq *apiRequest) (*ObjectRecord, error) {
	name := rq.params["name"]
	o, err := q.store.Object(rq.r.Context(), name)
	if errors.Is(err, ErrNotFound) || (err == nil && !o.Finished) {
		return nil, apiErrorf(codeResourceNotFound, "Object %q not found", name)
	}
	if err == nil && o.Expires.Before(rq.now) {
		return nil, apiErrorf(codeResourceExpired, "Object %q expired", name)
	}
	return o, err
}

func (q *Queue) startDownload(w http.ResponseWriter, rq *apiRequest) error {
	var in struct {
		AcceptDownloadMethods map[string]json.RawMessage `json:"acceptDownloadMethods"`
	}
	if err := decodeBody(rq, startDownloadSchema, &in); err != nil {
		return err
	}
	if in.AcceptDownloadMethods == nil {
		return invalidInput(startDownloadSchema, "acceptDownloadMethods is required")
	}
	for k, v := range in.AcceptDownloadMethods {
		if (k != "simple" && k != "getUrl") || string(v) != "true" {
			return invalidInput(startDownloadSchema, fmt.Sprintf("acceptDownloadMethods.%s must be one of simple, getUrl and true", k))
		}
	}
	o, err := q.finishedObject(rq)
	if err != nil {
		return err
	}
	exp := rq.now.Add(getURLLifetime)
	u, err := q.blobs.GetURL(rq.r.Context(), o.Name, exp)
	if err != nil {
		return fmt.Errorf("download URL of object %q: %w", o.Name, err)
	}
	switch {
	case in.AcceptDownloadMethods["simple"] != nil:
		q.reply(w, http.StatusOK, map[string]string{"method": "simple", "url": u})
	case in.AcceptDownloadMethods["getUrl"] != nil:
		q.reply(w, http.StatusOK, map[string]any{"method": "getUrl", "url": u, "expires": formatTime(exp), "hashes": hashesJSON(o)})
	default:
		return apiErrorf(codeNoMatchingMethod, "Object supports methods simple, getUrl")
	}
	return nil
}

func hashesJSON(o *ObjectRecord) map[string]string {
	if o.Hashes == nil {
		return map[string]string{}
	}
	return o.Hashes
}

func (q *Queue) objectMetadata(w http.ResponseWriter, rq *apiRequest) error {
	o, err := q.finishedObject(rq)
	if err != nil {
		return err
	}
	q.reply(w, http.StatusOK, map[string]any{"projectId": o.ProjectID, "expires": formatTime(o.Expires), "hashes": hashesJSON(o)})
	return nil
}

// download redirects to the object's storage URL.
func (q *Queue) download(w http.ResponseWriter, rq *apiRequest) error {
	o, err := q.finishedObject(rq)
	if err != nil {
		return err
	}
	u, err := q.blobs.GetURL(rq.r.Context(), o.Name, rq.now.Add(getURLLifetime))
	if err != nil {
		return fmt.Errorf("download URL of object %q: %w", o.Name, err)
	}
	w.Header().Set("Location", u)
	w.WriteHeader(http.StatusSeeOther)
	return nil
}
