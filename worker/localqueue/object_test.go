package localqueue

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"go.dockerworker.dev/docker-worker/worker/tc"
)

// objectUpload is an ObjectUpload of body, counting how often it is opened.
func objectUpload(name, contentType, body string, opens *int) tc.ObjectUpload {
	sum := sha256.Sum256([]byte(body))
	return tc.ObjectUpload{
		Name: name, ContentType: contentType, Expires: time.Now().Add(24 * time.Hour).UTC().Truncate(time.Millisecond),
		Size: int64(len(body)), SHA256: hex.EncodeToString(sum[:]),
		Open: func(context.Context) (io.ReadCloser, error) {
			*opens++
			return io.NopCloser(strings.NewReader(body)), nil
		},
	}
}

// runClient is a worker's client for a claimed run of the queue at root.
func runClient(root string, c claimJSON) *tc.Client {
	return tc.New(tc.Config{RootURL: root, Retries: -1}).WithCredentials(*credsOf(c.Credentials))
}

// The worker's object upload (worker/tc) works against the embedded queue
// over HTTP, end to end: the bytes are stored plain (the identity encoding
// it sends is not recorded as an encoding), with their sha256, and the
// artifact is served.
func TestWorkerUploadsObjectArtifact(t *testing.T) {
	e := newEnv(t, nil)
	c := e.claimOne(nil)
	taskID := c.Status.TaskID
	const body = "<html>built report</html>\n"
	opens := 0
	u := objectUpload("public/report.html", "text/html; charset=utf-8", body, &opens)
	if err := runClient(e.root, c).UploadObjectArtifact(t.Context(), taskID, c.RunID, u); err != nil {
		t.Fatal(err)
	}
	if opens != 1 {
		t.Errorf("body opened %d times, want 1", opens)
	}

	var info struct{ StorageType, ContentType string }
	e.call("GET", runPath(taskID, 0, "/artifact-info/public%2Freport.html"), &adminCreds, nil, 200, "", &info)
	if info.StorageType != "object" || info.ContentType != "text/html; charset=utf-8" {
		t.Errorf("artifact info = %+v", info)
	}
	resp, _ := e.request("GET", runPath(taskID, 0, "/artifacts/public%2Freport.html"), &adminCreds, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("getArtifact = %d, want 303", resp.StatusCode)
	}
	got, b := e.requestURL("GET", resp.Header.Get("Location"), nil, nil, nil)
	if got.StatusCode != 200 || string(b) != body {
		t.Fatalf("stored object = %d %q, want %q", got.StatusCode, b, body)
	}
	if ce, ct, cd := got.Header.Get("Content-Encoding"), got.Header.Get("Content-Type"), got.Header.Get("Content-Disposition"); ce != "" || ct != u.ContentType || cd != "" {
		t.Errorf("served with Content-Encoding %q, Content-Type %q, Content-Disposition %q; want none, %q, none (local storage)", ce, ct, cd, u.ContentType)
	}
	var meta struct{ Hashes map[string]string }
	objPath := e.root + "/api/object/v1/metadata/" + tc.PathEscape(objectName(taskID, 0, "public/report.html"))
	if r, mb := e.requestURL("GET", objPath, &adminCreds, nil, nil); r.StatusCode != 200 || json.Unmarshal(mb, &meta) != nil || meta.Hashes["sha256"] != u.SHA256 {
		t.Errorf("object metadata = %d %s, want sha256 %s", r.StatusCode, mb, u.SHA256)
	}
}

// headerInjector wraps the queue's handler and adds a header to the ones
// createUpload's putUrl method requires, as a deployment with, say,
// server-side encryption might.
func headerInjector(t *testing.T, next http.Handler, name, value string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut || !strings.HasPrefix(r.URL.Path, "/api/object/v1/upload/") {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		var answer map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil {
			t.Errorf("createUpload answer %s: %v", rec.Body, err)
		} else if put, ok := answer["uploadMethod"].(map[string]any)["putUrl"].(map[string]any); ok {
			put["headers"].(map[string]any)[name] = value
		}
		b, _ := json.Marshal(answer)
		maps.Copy(w.Header(), rec.Header())
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.Code)
		w.Write(b)
	})
}

// A header the worker cannot honour is refused before any byte is sent,
// and the artifact stays unfinished.
func TestWorkerRefusesUnknownRequiredUploadHeader(t *testing.T) {
	e := newEnv(t, nil)
	front := httptest.NewServer(headerInjector(t, e.q.Handler(), "x-amz-server-side-encryption", "aws:kms"))
	t.Cleanup(front.Close)
	c := e.claimOne(nil)
	taskID := c.Status.TaskID
	opens := 0
	err := runClient(front.URL, c).UploadObjectArtifact(t.Context(), taskID, c.RunID, objectUpload("public/data.bin", "application/octet-stream", "bytes", &opens))
	if err == nil || !strings.Contains(err.Error(), `requires header "x-amz-server-side-encryption"`) {
		t.Fatalf("err = %v, want a refusal naming the header", err)
	}
	if opens != 0 {
		t.Errorf("body opened %d times, want 0", opens)
	}
	if ok, err := e.q.blobs.Exists(t.Context(), objectName(taskID, 0, "public/data.bin")); err != nil || ok {
		t.Errorf("object bytes stored = %v, %v; want none", ok, err)
	}
	e.callErr("GET", runPath(taskID, 0, "/artifacts/public%2Fdata.bin"), &adminCreds, nil, codeResourceNotFound)
}

// fakeS3 is a BlobStore standing for S3: the queue does not serve its
// bytes, and it records what its upload URLs are signed for.
type fakeS3 struct{ puts []BlobHeaders }

func (f *fakeS3) PutURL(_ context.Context, key string, put BlobHeaders, _ time.Time) (string, error) {
	f.puts = append(f.puts, put)
	return "https://bucket.example/" + key + "?X-Amz-Signature=s", nil
}
func (f *fakeS3) GetURL(_ context.Context, key string, _ time.Time) (string, error) {
	return "https://bucket.example/" + key, nil
}
func (f *fakeS3) Put(context.Context, string, BlobHeaders, []byte) error { return nil }
func (f *fakeS3) Exists(context.Context, string) (bool, error)           { return false, nil }

// createUpload's putUrl answer lists the headers the real object service
// lists: Content-Type, Content-Length and Content-Encoding: identity
// always, and Content-Disposition: attachment for HTML when the bytes live
// in S3 (signed into the URL), as on AWS.
func TestCreateUploadPutURLHeaders(t *testing.T) {
	for _, tt := range []struct {
		name, contentType string
		s3                bool
		wantDisposition   string
	}{
		{"local storage, text", "text/plain", false, ""},
		{"local storage, HTML", "text/html", false, ""},
		{"S3, text", "text/plain", true, ""},
		{"S3, HTML", "text/html", true, "attachment"},
		{"S3, HTML with parameters", "Text/HTML; charset=utf-8", true, "attachment"},
		{"S3, XHTML", "application/xhtml+xml", true, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s3 := &fakeS3{}
			e := newEnv(t, func(c *Config) {
				if tt.s3 {
					c.Blobs = s3
				}
			})
			name := "dw-test/" + strings.ReplaceAll(tt.name, " ", "-")
			in := map[string]any{
				"projectId": "none", "uploadId": "3ZiNyeTzS3y2Q6b8RhbYvQ", "expires": time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
				"proposedUploadMethods": map[string]any{"putUrl": map[string]any{"contentType": tt.contentType, "contentLength": 12}},
			}
			b, _ := json.Marshal(in)
			resp, out := e.requestURL("PUT", e.root+"/api/object/v1/upload/"+tc.PathEscape(name), &adminCreds, b, nil)
			if resp.StatusCode != 200 {
				t.Fatalf("createUpload = %d %s", resp.StatusCode, out)
			}
			e.validate("object/v1/create-upload-response.json", out)
			var answer tc.CreateUploadResponse
			if err := json.Unmarshal(out, &answer); err != nil || answer.UploadMethod.PutURL == nil {
				t.Fatalf("createUpload answer %s: %v", out, err)
			}
			want := map[string]string{"Content-Type": tt.contentType, "Content-Length": "12", "Content-Encoding": "identity"}
			if tt.wantDisposition != "" {
				want["Content-Disposition"] = tt.wantDisposition
			}
			if diff := cmp.Diff(want, answer.UploadMethod.PutURL.Headers); diff != "" {
				t.Errorf("putUrl headers (-want +got):\n%s", diff)
			}
			if tt.s3 {
				if diff := cmp.Diff([]BlobHeaders{{ContentType: tt.contentType, ContentDisposition: tt.wantDisposition}}, s3.puts); diff != "" {
					t.Errorf("upload URL signed for (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// The queue's own storage accepts the headers the object service asks for
// and refuses a PUT without a Content-Disposition its URL was signed for.
func TestLocalStorageUploadHeaders(t *testing.T) {
	e := newEnv(t, nil)
	ctx := t.Context()
	putURL, err := e.q.local.PutURL(ctx, "k", BlobHeaders{ContentType: "text/html", ContentDisposition: "attachment"}, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	r, b := e.requestURL("PUT", putURL, nil, []byte("<p>"), http.Header{"Content-Type": {"text/html"}})
	if r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("PUT without the signed Content-Disposition = %d, want 401", r.StatusCode)
	}
	checkErrorBody(t, b, codeAuthenticationFailed)
	h := http.Header{"Content-Type": {"text/html"}, "Content-Disposition": {"attachment"}, "Content-Encoding": {"identity"}}
	if r, b := e.requestURL("PUT", putURL, nil, []byte("<p>"), h); r.StatusCode != 200 {
		t.Fatalf("PUT with the signed headers = %d %s", r.StatusCode, b)
	}
	getURL, _ := e.q.local.GetURL(ctx, "k", time.Now().Add(time.Minute))
	r, b = e.requestURL("GET", getURL, nil, nil, nil)
	if r.StatusCode != 200 || !bytes.Equal(b, []byte("<p>")) {
		t.Fatalf("GET = %d %q", r.StatusCode, b)
	}
	got := map[string]string{}
	for _, k := range []string{"Content-Type", "Content-Disposition", "Content-Encoding"} {
		got[k] = r.Header.Get(k)
	}
	want := map[string]string{"Content-Type": "text/html", "Content-Disposition": "attachment", "Content-Encoding": ""}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("served headers (-want +got):\n%s", diff)
	}
}
