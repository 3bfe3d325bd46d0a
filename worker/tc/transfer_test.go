package tc

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type recordedPut struct {
	Method, URI, Auth, Type, Encoding, Body string
	Length                                  int64
}

// fakeStorage records PUTs and answers each with the next status in
// statuses (200 once they run out).
func fakeStorage(t *testing.T, statuses ...int) (*httptest.Server, func() []recordedPut) {
	var mu sync.Mutex
	var puts []recordedPut
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		b, _ := io.ReadAll(r.Body)
		puts = append(puts, recordedPut{r.Method, r.RequestURI, r.Header.Get("Authorization"),
			r.Header.Get("Content-Type"), r.Header.Get("Content-Encoding"), string(b), r.ContentLength})
		if len(puts) <= len(statuses) {
			w.WriteHeader(statuses[len(puts)-1])
			w.Write([]byte("<Error><Code>SlowDown</Code></Error>"))
		}
	}))
	t.Cleanup(srv.Close)
	return srv, func() []recordedPut {
		mu.Lock()
		defer mu.Unlock()
		return append([]recordedPut(nil), puts...)
	}
}

func TestPutArtifactRetriesAndSendsHeaders(t *testing.T) {
	srv, puts := fakeStorage(t, http.StatusServiceUnavailable)
	c := testClient(srv, 3) // has credentials, which must not be sent
	content := "hello, artifact"
	opens, closes := 0, 0
	type ctxKey struct{}
	ctx := context.WithValue(t.Context(), ctxKey{}, "the caller's")
	open := func(ctx context.Context) (io.ReadCloser, error) {
		if ctx.Value(ctxKey{}) != "the caller's" {
			t.Error("open was not given the caller's context")
		}
		opens++
		return closeCounter{strings.NewReader(content), &closes}, nil
	}
	putURL := srv.URL + "/bucket/public/logs/live_backing.log?X-Amz-Signature=abc%2Fdef&X-Amz-Expires=300"
	if err := c.PutArtifact(ctx, putURL, open, int64(len(content)), "text/plain; charset=utf-8", "gzip"); err != nil {
		t.Fatal(err)
	}
	one := recordedPut{"PUT", "/bucket/public/logs/live_backing.log?X-Amz-Signature=abc%2Fdef&X-Amz-Expires=300", "",
		"text/plain; charset=utf-8", "gzip", content, int64(len(content))}
	if diff := cmp.Diff([]recordedPut{one, one}, puts()); diff != "" {
		t.Errorf("PUTs (-want +got):\n%s", diff)
	}
	if opens != 2 || closes != 2 {
		t.Errorf("body opened %d and closed %d times", opens, closes)
	}
}

type closeCounter struct {
	io.Reader
	n *int
}

func (c closeCounter) Close() error { *c.n++; return nil }

func TestPutArtifactEmptyBodyWithoutEncoding(t *testing.T) {
	srv, puts := fakeStorage(t)
	open := func(context.Context) (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("")), nil }
	if err := testClient(srv, -1).PutArtifact(t.Context(), srv.URL+"/empty", open, 0, "application/octet-stream", ""); err != nil {
		t.Fatal(err)
	}
	want := []recordedPut{{"PUT", "/empty", "", "application/octet-stream", "", "", 0}}
	if diff := cmp.Diff(want, puts()); diff != "" {
		t.Errorf("PUTs (-want +got):\n%s", diff)
	}
}

func TestPutArtifactClientErrorNotRetried(t *testing.T) {
	srv, puts := fakeStorage(t, http.StatusForbidden, http.StatusForbidden)
	open := func(context.Context) (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("x")), nil }
	err := testClient(srv, 3).PutArtifact(t.Context(), srv.URL+"/o?X-Amz-Signature=secret", open, 1, "text/plain", "")
	if StatusCode(err) != http.StatusForbidden || len(puts()) != 1 {
		t.Fatalf("err = %v after %d PUTs", err, len(puts()))
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("error leaks the presigned query: %v", err)
	}
	if !strings.Contains(err.Error(), "SlowDown") {
		t.Errorf("error lacks the body snippet: %v", err)
	}
}

func TestPutArtifactOpenError(t *testing.T) {
	srv, puts := fakeStorage(t)
	boom := errors.New("boom")
	err := testClient(srv, 3).PutArtifact(t.Context(), srv.URL+"/o", func(context.Context) (io.ReadCloser, error) { return nil, boom }, 1, "text/plain", "")
	if !errors.Is(err, boom) || len(puts()) != 0 {
		t.Errorf("err = %v, %d PUTs", err, len(puts()))
	}
}

func gzipped(t *testing.T, s string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestDownloadFollowsRedirectWithoutLeakingAuthorization(t *testing.T) {
	const content = "line 1\nline 2\n"
	var storageAuth, storageURI string
	storage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		storageAuth, storageURI = r.Header.Get("Authorization"), r.RequestURI
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Content-Encoding", "gzip")
		w.Write(gzipped(t, content))
	}))
	defer storage.Close()

	var queueAuth *hawkResult
	var queueURI string
	queue := fakeService(t, testVerifier(), func(w http.ResponseWriter, r *http.Request, auth *hawkResult) {
		queueAuth, queueURI = auth, r.RequestURI
		http.Redirect(w, r, storage.URL+"/bucket/T/0/public/logs/live_backing.log?X-Amz-Signature=sig", http.StatusSeeOther)
	})
	c := testClient(queue, -1)
	var out bytes.Buffer
	ct, err := c.Download(t.Context(), c.ArtifactURL("T", 0, "public/logs/live_backing.log"), &out)
	if err != nil {
		t.Fatal(err)
	}
	if queueAuth == nil || queueAuth.ClientID != testClientID {
		t.Errorf("queue request not signed: %+v", queueAuth)
	}
	if queueURI != "/api/queue/v1/task/T/runs/0/artifacts/public%2Flogs%2Flive_backing.log" {
		t.Errorf("queue URI = %q", queueURI)
	}
	if storageAuth != "" {
		t.Errorf("Authorization sent to storage: %q", storageAuth)
	}
	if storageURI != "/bucket/T/0/public/logs/live_backing.log?X-Amz-Signature=sig" {
		t.Errorf("storage URI = %q", storageURI)
	}
	if out.String() != content || ct != "text/plain; charset=utf-8" {
		t.Errorf("got %q (%s)", out.String(), ct)
	}
}

func TestDownloadPlainAndErrors(t *testing.T) {
	var n int
	srv := fakeService(t, testVerifier(), func(w http.ResponseWriter, r *http.Request, auth *hawkResult) {
		n++
		switch r.URL.Path {
		case "/flaky":
			if n == 1 {
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"a":1}`))
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		case "/error-artifact":
			writeTCError(w, http.StatusFailedDependency, "ArtifactError", "file-missing-on-worker: gone")
		}
	})
	c := testClient(srv, 2)
	var out bytes.Buffer
	ct, err := c.Download(t.Context(), srv.URL+"/flaky", &out)
	if err != nil || out.String() != `{"a":1}` || ct != "application/json" || n != 2 {
		t.Errorf("flaky: %v %q %q after %d requests", err, out.String(), ct, n)
	}
	if _, err := c.Download(t.Context(), srv.URL+"/loop", io.Discard); err == nil || !strings.Contains(err.Error(), "redirects") {
		t.Errorf("redirect loop: %v", err)
	}
	n = 0
	_, err = c.Download(t.Context(), srv.URL+"/error-artifact", io.Discard)
	if StatusCode(err) != http.StatusFailedDependency || n != 1 {
		t.Errorf("424: %v after %d requests", err, n)
	}
}
