package tc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Object artifacts: the queue declares the artifact and hands out
// credentials for the object service, the object service negotiates the
// upload (createUpload), the bytes go to the URL it returns, and
// finishUpload then the queue's finishArtifact make the artifact visible.
// UploadObjectArtifact does all of it; the typed calls below are its steps.

const objectService = "object"

// StorageObject is the storage type of artifacts kept by the object service
// (post-artifact-request.json).
const StorageObject = "object"

// ObjectArtifactRequest is the body of createArtifact for an object
// artifact. ContentLength is informational and sent when positive.
type ObjectArtifactRequest struct {
	Expires       time.Time
	ContentType   string
	ContentLength int64
}

// MarshalJSON encodes the object variant of post-artifact-request.json.
func (r ObjectArtifactRequest) MarshalJSON() ([]byte, error) {
	if r.Expires.IsZero() {
		return nil, errors.New("object artifact request: no expires")
	}
	var length *int64
	if r.ContentLength > 0 {
		length = &r.ContentLength
	}
	return json.Marshal(struct {
		StorageType   string `json:"storageType"`
		Expires       string `json:"expires"`
		ContentType   string `json:"contentType"`
		ContentLength *int64 `json:"contentLength,omitempty"`
	}{StorageObject, r.Expires.UTC().Format(tcTimeFormat), r.ContentType, length})
}

// ObjectArtifactResponse is the queue's answer to createArtifact for an
// object artifact: the object to upload and the temporary credentials that
// may upload it (object-credentials.json). Pass ProjectID, UploadID and
// Expires unchanged to CreateUpload.
type ObjectArtifactResponse struct {
	StorageType string      `json:"storageType"`
	Name        string      `json:"name"`
	ProjectID   string      `json:"projectId"`
	UploadID    string      `json:"uploadId"`
	Expires     time.Time   `json:"expires"`
	Credentials Credentials `json:"credentials"`
}

// CreateObjectArtifact declares an object artifact on a run; upload it with
// the returned credentials (see UploadObjectArtifact).
func (c *Client) CreateObjectArtifact(ctx context.Context, taskID string, runID int, name string, req ObjectArtifactRequest) (*ObjectArtifactResponse, error) {
	var out ObjectArtifactResponse
	if err := c.Request(ctx, queueService, http.MethodPost, runPath(taskID, runID)+"/artifacts/"+PathEscape(name), nil, req, &out); err != nil {
		return nil, fmt.Errorf("create object artifact %q on %s/%d: %w", name, taskID, runID, err)
	}
	if out.StorageType != StorageObject || out.Name == "" || out.UploadID == "" || out.Credentials.ClientID == "" {
		return nil, fmt.Errorf("create object artifact %q on %s/%d: the queue answered storageType %q without an object to upload", name, taskID, runID, out.StorageType)
	}
	return &out, nil
}

// FinishArtifact marks an object artifact present once its object is
// uploaded and finished (finish-artifact-request.json).
func (c *Client) FinishArtifact(ctx context.Context, taskID string, runID int, name, uploadID string) error {
	in := struct {
		UploadID string `json:"uploadId"`
	}{uploadID}
	if err := c.Request(ctx, queueService, http.MethodPut, runPath(taskID, runID)+"/artifacts/"+PathEscape(name), nil, in, nil); err != nil {
		return fmt.Errorf("finish artifact %q on %s/%d: %w", name, taskID, runID, err)
	}
	return nil
}

// CreateUploadRequest is the body of the object service's createUpload
// (create-upload-request.json). Hashes maps an algorithm ("sha256",
// "sha512") to the lowercase hex digest of the object's bytes.
type CreateUploadRequest struct {
	ProjectID             string                `json:"projectId"`
	UploadID              string                `json:"uploadId"`
	Expires               time.Time             `json:"expires"`
	Hashes                map[string]string     `json:"hashes,omitempty"`
	ProposedUploadMethods ProposedUploadMethods `json:"proposedUploadMethods"`
}

// ProposedUploadMethods are the upload methods a client offers; the object
// service picks at most one. The worker proposes putUrl only.
type ProposedUploadMethods struct {
	PutURL *PutURLProposal `json:"putUrl,omitempty"`
}

// PutURLProposal proposes the putUrl method for ContentLength bytes of
// ContentType (upload-method-put-url.json, request).
type PutURLProposal struct {
	ContentType   string `json:"contentType"`
	ContentLength int64  `json:"contentLength"`
}

// CreateUploadResponse is the object service's answer to createUpload
// (create-upload-response.json).
type CreateUploadResponse struct {
	ProjectID    string       `json:"projectId"`
	UploadID     string       `json:"uploadId"`
	Expires      time.Time    `json:"expires"`
	UploadMethod UploadMethod `json:"uploadMethod"`
}

// UploadMethod is the method the object service selected: PutURL is nil
// when it selected another one, or none.
type UploadMethod struct {
	PutURL *PutURLUpload `json:"putUrl,omitempty"`
}

// PutURLUpload is a selected putUrl method (upload-method-put-url.json,
// response): PUT the bytes to URL before Expires, with exactly Headers.
type PutURLUpload struct {
	URL     string            `json:"url"`
	Expires time.Time         `json:"expires"`
	Headers map[string]string `json:"headers"`
}

// FinishUploadRequest is the body of finishUpload
// (finish-upload-request.json).
type FinishUploadRequest struct {
	ProjectID string            `json:"projectId"`
	UploadID  string            `json:"uploadId"`
	Hashes    map[string]string `json:"hashes,omitempty"`
}

// CreateUpload starts (or renews) the upload of object name; c must carry
// credentials with object:upload:<projectId>:<name>, such as those of
// ObjectArtifactResponse.
func (c *Client) CreateUpload(ctx context.Context, name string, req CreateUploadRequest) (*CreateUploadResponse, error) {
	var out CreateUploadResponse
	if err := c.Request(ctx, objectService, http.MethodPut, "/upload/"+PathEscape(name), nil, req, &out); err != nil {
		return nil, fmt.Errorf("create upload of object %q: %w", name, err)
	}
	return &out, nil
}

// FinishUpload marks the upload of object name complete; the object is
// immutable afterwards.
func (c *Client) FinishUpload(ctx context.Context, name string, req FinishUploadRequest) error {
	if err := c.Request(ctx, objectService, http.MethodPost, "/finish-upload/"+PathEscape(name), nil, req, nil); err != nil {
		return fmt.Errorf("finish upload of object %q: %w", name, err)
	}
	return nil
}

// ObjectUpload is an artifact body to store in the object service. Objects
// have no content encoding: the body is stored and served as is.
type ObjectUpload struct {
	Name        string
	ContentType string
	Expires     time.Time
	// Size is the exact length of the body.
	Size int64
	// SHA256 is the lowercase hex sha256 of the body.
	SHA256 string
	// Open returns the body from its start. It is called once per PUT
	// attempt; UploadObjectArtifact closes what it returns.
	Open func(ctx context.Context) (io.ReadCloser, error)
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// UploadObjectArtifact uploads u as an object artifact of a run. c must
// carry the run's credentials. It creates the artifact, then, with the
// object-service credentials the queue returns, proposes a putUrl upload
// with u's sha256, PUTs the body with exactly the headers the object
// service asks for, finishes the upload and finishes the artifact.
//
// Headers the object service may ask for are sent when they are safe:
// Content-Type (it must be u's), Content-Length (it must be u's size),
// Content-Encoding (only "identity": the body is not encoded), and
// Content-Disposition (any value). Any other header is refused with an
// error before anything is sent, since the worker could not honour it.
func (c *Client) UploadObjectArtifact(ctx context.Context, taskID string, runID int, u ObjectUpload) error {
	fail := func(err error) error {
		return fmt.Errorf("upload object artifact %q on %s/%d: %w", u.Name, taskID, runID, err)
	}
	switch {
	case u.Open == nil:
		return fail(errors.New("no body"))
	case u.Size < 0:
		return fail(fmt.Errorf("negative size %d", u.Size))
	case !sha256Hex.MatchString(u.SHA256):
		return fail(fmt.Errorf("sha256 %q is not 64 lowercase hex digits", u.SHA256))
	}
	art, err := c.CreateObjectArtifact(ctx, taskID, runID, u.Name, ObjectArtifactRequest{Expires: u.Expires, ContentType: u.ContentType, ContentLength: u.Size})
	if err != nil {
		return fail(err)
	}
	oc := c.WithCredentials(art.Credentials)
	hashes := map[string]string{"sha256": u.SHA256}
	up, err := oc.CreateUpload(ctx, art.Name, CreateUploadRequest{
		ProjectID: art.ProjectID, UploadID: art.UploadID, Expires: art.Expires, Hashes: hashes,
		ProposedUploadMethods: ProposedUploadMethods{PutURL: &PutURLProposal{ContentType: u.ContentType, ContentLength: u.Size}},
	})
	if err != nil {
		return fail(err)
	}
	put := up.UploadMethod.PutURL
	if put == nil {
		return fail(fmt.Errorf("the object service selected no putUrl upload for object %q", art.Name))
	}
	header, err := objectPutHeader(put.Headers, u.ContentType, u.Size)
	if err != nil {
		return fail(fmt.Errorf("object %q: %w", art.Name, err))
	}
	if err := c.put(ctx, put.URL, u.Open, u.Size, header); err != nil {
		return fail(err)
	}
	if err := oc.FinishUpload(ctx, art.Name, FinishUploadRequest{ProjectID: art.ProjectID, UploadID: art.UploadID, Hashes: hashes}); err != nil {
		return fail(err)
	}
	if err := c.FinishArtifact(ctx, taskID, runID, u.Name, art.UploadID); err != nil {
		return fail(err)
	}
	return nil
}

// objectPutHeader turns the headers a putUrl upload method requires into
// the PUT's header, refusing those the worker cannot send truthfully.
// Content-Length is checked but left to the request's ContentLength.
func objectPutHeader(required map[string]string, contentType string, size int64) (http.Header, error) {
	h := http.Header{}
	for name, v := range required {
		switch key := http.CanonicalHeaderKey(strings.TrimSpace(name)); key {
		case "Content-Type":
			if v != contentType {
				return nil, fmt.Errorf("the upload URL requires Content-Type %q, but the artifact is %q", v, contentType)
			}
			h.Set(key, v)
		case "Content-Length":
			if strings.TrimSpace(v) != strconv.FormatInt(size, 10) {
				return nil, fmt.Errorf("the upload URL requires Content-Length %q, but the body has %d bytes", v, size)
			}
		case "Content-Encoding":
			if !strings.EqualFold(strings.TrimSpace(v), "identity") {
				return nil, fmt.Errorf("the upload URL requires Content-Encoding %q, but the body is sent unencoded (identity)", v)
			}
			h.Set(key, v)
		case "Content-Disposition":
			h.Set(key, v)
		default:
			return nil, fmt.Errorf("the upload URL requires header %q, which the worker does not send", name)
		}
	}
	return h, nil
}
