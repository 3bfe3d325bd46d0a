package tc

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"go.dockerworker.dev/docker-worker/worker/internal/apischema"
)

const (
	runClientID    = "task-client/T/0/on/wg/w/until/1795320599.842"
	runToken       = "run-token"
	uploaderID     = "artifact-upload/T/0/on/wg/w"
	uploaderToken  = "uploader-token"
	objectName     = "t/T/0/public/report.html"
	objectUploadID = "3ZiNyeTzS3y2Q6b8RhbYvQ"
	objectProject  = "proj"
)

// objectCall is one request the fake services saw.
type objectCall struct {
	Method, Path, Client string
	Body                 string `json:",omitempty"`
}

// objectWorld is a fake queue, object service and storage behind one
// server, answering as the real services do, with every body checked
// against the published schemas.
type objectWorld struct {
	t       *testing.T
	srv     *httptest.Server
	schemas *apischema.Set
	// putHeaders are the headers createUpload's putUrl method requires;
	// putStatuses are the storage's answers to successive PUTs (200 once
	// they run out).
	putHeaders  map[string]string
	putStatuses []int
	// storage, when set, is the base URL of the putUrl instead of srv's
	// (e.g. a fault proxy in front of srv).
	storage string

	mu       sync.Mutex
	calls    []objectCall
	puts     []http.Header // of the storage PUTs, in order
	putBodys []string
}

func newObjectWorld(t *testing.T, putHeaders map[string]string, putStatuses ...int) *objectWorld {
	t.Helper()
	w := &objectWorld{t: t, schemas: apischema.Open(t), putHeaders: putHeaders, putStatuses: putStatuses}
	v := newVerifier(map[string]string{runClientID: runToken, uploaderID: uploaderToken})
	w.srv = fakeService(t, v, w.serve)
	return w
}

func (w *objectWorld) validate(schema string, doc []byte) {
	w.t.Helper()
	if err := w.schemas.Validate(schema, doc); err != nil {
		w.t.Errorf("%s: %v\n%s", schema, err, doc)
	}
}

func (w *objectWorld) reply(rw http.ResponseWriter, schema string, v any) {
	w.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		w.t.Fatal(err)
	}
	w.validate(schema, b)
	rw.Header().Set("Content-Type", "application/json")
	rw.Write(b)
}

func (w *objectWorld) serve(rw http.ResponseWriter, r *http.Request, auth *hawkResult) {
	body := readBody(w.t, r)
	client := ""
	if auth != nil {
		client = auth.ClientID
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	call := objectCall{Method: r.Method, Path: r.URL.EscapedPath(), Client: client}
	if len(body) > 0 && !strings.HasPrefix(call.Path, "/storage/") {
		call.Body = string(compactJSON(w.t, body))
	}
	w.calls = append(w.calls, call)
	artifactPath := "/api/queue/v1/task/T/runs/0/artifacts/public%2Freport.html"
	switch {
	case r.Method == http.MethodPost && call.Path == artifactPath:
		w.validate("queue/v1/post-artifact-request.json", body)
		w.reply(rw, "queue/v1/post-artifact-response.json", map[string]any{
			"storageType": "object", "name": objectName, "projectId": objectProject, "uploadId": objectUploadID,
			"expires":     "2027-01-02T03:04:05.678Z",
			"credentials": map[string]string{"clientId": uploaderID, "accessToken": uploaderToken, "certificate": "{}"},
		})
	case r.Method == http.MethodPut && call.Path == "/api/object/v1/upload/"+PathEscape(objectName):
		w.validate("object/v1/create-upload-request.json", body)
		storage := w.srv.URL
		if w.storage != "" {
			storage = w.storage
		}
		w.reply(rw, "object/v1/create-upload-response.json", map[string]any{
			"projectId": objectProject, "uploadId": objectUploadID, "expires": "2027-01-02T03:04:05.678Z",
			"uploadMethod": map[string]any{"putUrl": map[string]any{
				"url":     storage + "/storage/" + objectName + "?X-Amz-Signature=secret",
				"expires": "2026-01-01T00:45:00.000Z", "headers": w.putHeaders,
			}},
		})
	case r.Method == http.MethodPut && strings.HasPrefix(call.Path, "/storage/"):
		if r.Header.Get("Authorization") != "" {
			w.t.Errorf("storage PUT carries Authorization")
		}
		h := r.Header.Clone()
		h.Set("Content-Length", strconv.FormatInt(r.ContentLength, 10))
		w.puts = append(w.puts, h)
		w.putBodys = append(w.putBodys, string(body))
		if n := len(w.puts); n <= len(w.putStatuses) {
			rw.WriteHeader(w.putStatuses[n-1])
		}
	case r.Method == http.MethodPost && call.Path == "/api/object/v1/finish-upload/"+PathEscape(objectName):
		w.validate("object/v1/finish-upload-request.json", body)
		rw.Write([]byte("{}"))
	case r.Method == http.MethodPut && call.Path == artifactPath:
		w.validate("queue/v1/finish-artifact-request.json", body)
		rw.Write([]byte("{}"))
	default:
		w.t.Errorf("unexpected %s %s", r.Method, r.RequestURI)
		writeTCError(rw, http.StatusNotFound, "ResourceNotFound", "no such route")
	}
}

func (w *objectWorld) seen() []objectCall {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]objectCall(nil), w.calls...)
}

// runClient is a client with the run's credentials and tiny retry delays.
func (w *objectWorld) runClient() *Client {
	return New(Config{
		RootURL: w.srv.URL, HTTPClient: w.srv.Client(),
		Credentials: &Credentials{ClientID: runClientID, AccessToken: runToken},
		BaseDelay:   time.Millisecond, MaxDelay: 5 * time.Millisecond,
	})
}

const reportBody = "<html>report</html>"

// reportSHA256 is the sha256 of reportBody.
const reportSHA256 = "d4504aee5c2043441a539d48f507840f27087655d44e319b85885bf920e52ab0"

func reportUpload(opens *int) ObjectUpload {
	return ObjectUpload{
		Name: "public/report.html", ContentType: "text/html", Size: int64(len(reportBody)),
		Expires: time.Date(2027, 1, 2, 3, 4, 5, 678e6, time.UTC), SHA256: reportSHA256,
		Open: func(context.Context) (io.ReadCloser, error) {
			*opens++
			return io.NopCloser(strings.NewReader(reportBody)), nil
		},
	}
}

// The whole protocol, as a real deployment on AWS answers it: the PUT
// carries exactly the headers the upload method lists (Content-Encoding:
// identity and Content-Disposition included), each service is called with
// the right credentials, and a 5xx from storage is retried.
func TestUploadObjectArtifact(t *testing.T) {
	w := newObjectWorld(t, map[string]string{
		"Content-Type": "text/html", "Content-Length": "19", "Content-Encoding": "identity", "Content-Disposition": "attachment",
	}, http.StatusServiceUnavailable)
	opens := 0
	if err := w.runClient().UploadObjectArtifact(t.Context(), "T", 0, reportUpload(&opens)); err != nil {
		t.Fatal(err)
	}
	artifact := "/api/queue/v1/task/T/runs/0/artifacts/public%2Freport.html"
	object := PathEscape(objectName)
	hashes := `"hashes":{"sha256":"` + reportSHA256 + `"}`
	want := []objectCall{
		{"POST", artifact, runClientID, `{"contentLength":19,"contentType":"text/html","expires":"2027-01-02T03:04:05.678Z","storageType":"object"}`},
		{"PUT", "/api/object/v1/upload/" + object, uploaderID, `{"expires":"2027-01-02T03:04:05.678Z",` + hashes +
			`,"projectId":"proj","proposedUploadMethods":{"putUrl":{"contentLength":19,"contentType":"text/html"}},"uploadId":"` + objectUploadID + `"}`},
		{"PUT", "/storage/" + objectName, "", ""},
		{"PUT", "/storage/" + objectName, "", ""},
		{"POST", "/api/object/v1/finish-upload/" + object, uploaderID, `{` + hashes + `,"projectId":"proj","uploadId":"` + objectUploadID + `"}`},
		{"PUT", artifact, runClientID, `{"uploadId":"` + objectUploadID + `"}`},
	}
	if diff := cmp.Diff(want, w.seen()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	if opens != 2 {
		t.Errorf("body opened %d times, want 2 (one per PUT)", opens)
	}
	for i, h := range w.puts {
		got := map[string]string{}
		for k := range h {
			switch k {
			case "User-Agent", "Accept-Encoding": // the transport's own
			default:
				got[k] = h.Get(k)
			}
		}
		wantHeader := map[string]string{"Content-Type": "text/html", "Content-Length": "19", "Content-Encoding": "identity", "Content-Disposition": "attachment"}
		if diff := cmp.Diff(wantHeader, got); diff != "" {
			t.Errorf("PUT %d headers (-want +got):\n%s", i, diff)
		}
		if w.putBodys[i] != reportBody {
			t.Errorf("PUT %d body %q, want %q", i, w.putBodys[i], reportBody)
		}
	}
}

// Headers the worker cannot send truthfully are refused before any byte
// goes out, and nothing is finished.
func TestUploadObjectArtifactRefusesUnsafeHeaders(t *testing.T) {
	for _, tt := range []struct {
		name    string
		headers map[string]string
		wantErr string
	}{
		{"unknown header", map[string]string{"Content-Type": "text/html", "x-amz-server-side-encryption": "aws:kms"}, `requires header "x-amz-server-side-encryption"`},
		{"other content type", map[string]string{"Content-Type": "text/plain"}, `requires Content-Type "text/plain"`},
		{"other length", map[string]string{"Content-Length": "20"}, `requires Content-Length "20"`},
		{"gzip encoding", map[string]string{"Content-Encoding": "gzip"}, `requires Content-Encoding "gzip"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := newObjectWorld(t, tt.headers)
			opens := 0
			err := w.runClient().UploadObjectArtifact(t.Context(), "T", 0, reportUpload(&opens))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %s", err, tt.wantErr)
			}
			if opens != 0 || len(w.puts) != 0 {
				t.Errorf("body opened %d times and %d PUTs made, want none", opens, len(w.puts))
			}
			if calls := w.seen(); len(calls) != 2 {
				t.Errorf("calls after the refusal: %+v", calls[2:])
			}
		})
	}
}

// Header names are matched case-insensitively, as HTTP does.
func TestObjectPutHeaderCaseInsensitive(t *testing.T) {
	h, err := objectPutHeader(map[string]string{"content-type": "a/b", "CONTENT-ENCODING": "Identity", "content-length": "3"}, "a/b", 3)
	if err != nil {
		t.Fatal(err)
	}
	want := http.Header{"Content-Type": {"a/b"}, "Content-Encoding": {"Identity"}}
	if diff := cmp.Diff(want, h); diff != "" {
		t.Errorf("header (-want +got):\n%s", diff)
	}
}

func TestUploadObjectArtifactChecksItsInput(t *testing.T) {
	w := newObjectWorld(t, nil)
	opens := 0
	for name, mutate := range map[string]func(*ObjectUpload){
		"no body":        func(u *ObjectUpload) { u.Open = nil },
		"negative size":  func(u *ObjectUpload) { u.Size = -1 },
		"no sha256":      func(u *ObjectUpload) { u.SHA256 = "" },
		"uppercase hex":  func(u *ObjectUpload) { u.SHA256 = strings.ToUpper(reportSHA256) },
		"short checksum": func(u *ObjectUpload) { u.SHA256 = reportSHA256[:60] },
	} {
		u := reportUpload(&opens)
		mutate(&u)
		if err := w.runClient().UploadObjectArtifact(t.Context(), "T", 0, u); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if calls := w.seen(); len(calls) != 0 {
		t.Errorf("invalid uploads reached the services: %+v", calls)
	}
}

// A queue that answers createArtifact without an object (say, an old
// queue that ignores the storage type) is an error, not a silent no-op.
func TestCreateObjectArtifactNeedsAnObject(t *testing.T) {
	srv := fakeService(t, testVerifier(), func(w http.ResponseWriter, r *http.Request, _ *hawkResult) {
		writeJSON(w, map[string]string{"storageType": "s3", "putUrl": "https://x.example/y"})
	})
	_, err := testClient(srv, -1).CreateObjectArtifact(t.Context(), "T", 0, "a", ObjectArtifactRequest{Expires: time.Now().Add(time.Hour), ContentType: "text/plain"})
	if err == nil || !strings.Contains(err.Error(), `storageType "s3"`) {
		t.Errorf("err = %v", err)
	}
}
