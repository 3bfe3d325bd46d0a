package worker

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/worker/artifacts"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// requester is the generic call of worker/tc's client, which object
// uploads need (the object service has no typed calls there).
type requester interface {
	Request(ctx context.Context, service, method, path string, query url.Values, in, out any) error
}

type objectArtifactRequest struct {
	StorageType string `json:"storageType"`
	Expires     string `json:"expires"`
	ContentType string `json:"contentType"`
}

type objectArtifactResponse struct {
	StorageType string `json:"storageType"`
	Name        string `json:"name"`
	ProjectID   string `json:"projectId"`
	UploadID    string `json:"uploadId"`
	Expires     string `json:"expires"`
	Credentials struct {
		ClientID    string `json:"clientId"`
		AccessToken string `json:"accessToken"`
		Certificate string `json:"certificate"`
	} `json:"credentials"`
}

type putURLProposal struct {
	ContentType   string `json:"contentType"`
	ContentLength int64  `json:"contentLength"`
}

type createUploadRequest struct {
	ProjectID             string            `json:"projectId"`
	UploadID              string            `json:"uploadId"`
	Expires               string            `json:"expires"`
	Hashes                map[string]string `json:"hashes"`
	ProposedUploadMethods struct {
		PutURL putURLProposal `json:"putUrl"`
	} `json:"proposedUploadMethods"`
}

type createUploadResponse struct {
	UploadMethod struct {
		PutURL *struct {
			URL     string            `json:"url"`
			Headers map[string]string `json:"headers"`
		} `json:"putUrl"`
	} `json:"uploadMethod"`
}

type finishUploadRequest struct {
	ProjectID string            `json:"projectId"`
	UploadID  string            `json:"uploadId"`
	Hashes    map[string]string `json:"hashes"`
}

// uploadObject uploads an artifact with storage type "object": the queue
// declares it and hands out object-service credentials, the bytes go to the
// URL the object service's createUpload returns, then finishUpload and the
// queue's finishArtifact make it visible. Objects carry no content encoding,
// so a gzip body is stored decoded (through a temporary file, to know its
// length); its sha256 goes with the upload.
func (p publisher) uploadObject(ctx context.Context, a features.Upload) error {
	body, size, sum, cleanup, err := plainBody(a)
	if err != nil {
		return fmt.Errorf("upload artifact %s: %w", a.Name, err)
	}
	defer cleanup()

	q, ok := p.r.queue().(requester)
	if !ok {
		return errors.New("object artifacts need a queue client that can call the object service")
	}
	runPath := "/task/" + tc.PathEscape(p.r.taskID) + "/runs/" + strconv.Itoa(p.r.runID) + "/artifacts/" + tc.PathEscape(a.Name)
	var art objectArtifactResponse
	if err := q.Request(ctx, "queue", http.MethodPost, runPath, nil, objectArtifactRequest{
		StorageType: "object",
		Expires:     a.Expires.UTC().Format("2006-01-02T15:04:05.000Z"),
		ContentType: a.ContentType,
	}, &art); err != nil {
		return fmt.Errorf("create artifact %s: %w", a.Name, err)
	}
	if art.StorageType != "object" || art.Name == "" || art.UploadID == "" {
		return fmt.Errorf("create artifact %s: the queue answered storageType %q without an object to upload", a.Name, art.StorageType)
	}
	oc, ok := p.r.w.opts.RunQueue(tc.Credentials{
		ClientID: art.Credentials.ClientID, AccessToken: art.Credentials.AccessToken, Certificate: art.Credentials.Certificate,
	}).(requester)
	if !ok {
		return errors.New("object artifacts need a client that can call the object service")
	}
	hashes := map[string]string{"sha256": sum}
	up := createUploadRequest{ProjectID: art.ProjectID, UploadID: art.UploadID, Expires: art.Expires, Hashes: hashes}
	up.ProposedUploadMethods.PutURL = putURLProposal{ContentType: a.ContentType, ContentLength: size}
	var method createUploadResponse
	if err := oc.Request(ctx, "object", http.MethodPut, "/upload/"+tc.PathEscape(art.Name), nil, up, &method); err != nil {
		return fmt.Errorf("object upload of %s: %w", a.Name, err)
	}
	put := method.UploadMethod.PutURL
	if put == nil {
		return fmt.Errorf("object upload of %s: the object service offered no putUrl upload", a.Name)
	}
	for h, v := range put.Headers {
		switch {
		case strings.EqualFold(h, "Content-Type") && v == a.ContentType:
		case strings.EqualFold(h, "Content-Length") && v == strconv.FormatInt(size, 10):
		default:
			return fmt.Errorf("object upload of %s: the upload URL needs header %s: %s, which this worker does not send", a.Name, h, v)
		}
	}
	if err := p.r.queue().PutArtifact(ctx, put.URL, body, size, a.ContentType, ""); err != nil {
		return fmt.Errorf("upload artifact %s: %w", a.Name, err)
	}
	if err := oc.Request(ctx, "object", http.MethodPost, "/finish-upload/"+tc.PathEscape(art.Name), nil,
		finishUploadRequest{ProjectID: art.ProjectID, UploadID: art.UploadID, Hashes: hashes}, nil); err != nil {
		return fmt.Errorf("finish object upload of %s: %w", a.Name, err)
	}
	if err := q.Request(ctx, "queue", http.MethodPut, runPath, nil, struct {
		UploadID string `json:"uploadId"`
	}{art.UploadID}, nil); err != nil {
		return fmt.Errorf("finish artifact %s: %w", a.Name, err)
	}
	return nil
}

// plainBody returns the upload's content as stored in an object (decoded
// when gzip), its length and its sha256, and a cleanup function.
func plainBody(a features.Upload) (open func() (io.ReadCloser, error), size int64, sum string, cleanup func(), err error) {
	noop := func() {}
	switch a.ContentEncoding {
	case "":
		if a.SHA256 != "" {
			return func() (io.ReadCloser, error) { return a.Open(context.Background()) }, a.Size, a.SHA256, noop, nil
		}
		rc, err := a.Open(context.Background())
		if err != nil {
			return nil, 0, "", noop, err
		}
		defer rc.Close()
		h := sha256.New()
		n, err := io.Copy(h, rc)
		if err != nil {
			return nil, 0, "", noop, err
		}
		return func() (io.ReadCloser, error) { return a.Open(context.Background()) }, n, hex.EncodeToString(h.Sum(nil)), noop, nil
	case "gzip":
		rc, err := a.Open(context.Background())
		if err != nil {
			return nil, 0, "", noop, err
		}
		defer rc.Close()
		zr, err := gzip.NewReader(rc)
		if err != nil {
			return nil, 0, "", noop, fmt.Errorf("decode gzip body: %w", err)
		}
		sp, err := artifacts.Spool(os.TempDir(), zr, false)
		if err != nil {
			return nil, 0, "", noop, fmt.Errorf("decode gzip body: %w", err)
		}
		return func() (io.ReadCloser, error) { return sp.Open(context.Background()) }, sp.Size, sp.SHA256, func() { os.Remove(sp.Path) }, nil
	}
	return nil, 0, "", noop, fmt.Errorf("content encoding %q cannot be stored in an object", a.ContentEncoding)
}
