package e2e

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/localqueue"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// rawArtifact fetches an artifact's stored bytes as a client that accepts
// gzip sees them (not decoded), with the storage's response headers.
func (q *queueEnv) rawArtifact(t *testing.T, taskID string, runID int, name string) ([]byte, http.Header) {
	t.Helper()
	var where struct {
		URL string `json:"url"`
	}
	path := "/task/" + tc.PathEscape(taskID) + "/runs/" + strconv.Itoa(runID) + "/artifact-content/" + tc.PathEscape(name)
	if err := q.admin.Request(t.Context(), "queue", http.MethodGet, path, nil, nil, &where); err != nil {
		t.Fatalf("artifact %s: %v", name, err)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, where.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", name, resp.StatusCode, err)
	}
	return b, resp.Header
}

// startFlakyQueue is startQueue behind a proxy that answers 500 to every
// artifact upload (PUT) fail selects; the queue hands out URLs of the proxy.
// mutate, when given, adjusts the queue's config.
func startFlakyQueue(t *testing.T, fail func(*http.Request) bool, mutate ...func(*localqueue.Config)) *queueEnv {
	t.Helper()
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var backURL *url.URL
	q := startQueue(t, func(c *localqueue.Config) {
		backURL, _ = url.Parse(c.RootURL)
		c.RootURL = "http://" + front.Addr().String()
		for _, m := range mutate {
			m(c)
		}
	})
	proxy := httputil.NewSingleHostReverseProxy(backURL)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && fail(r) {
			io.Copy(io.Discard, r.Body)
			http.Error(w, "injected failure", http.StatusInternalServerError)
			return
		}
		proxy.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(front)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	q.rootURL = "http://" + front.Addr().String()
	q.admin = tc.New(tc.Config{RootURL: q.rootURL, Credentials: &tc.Credentials{ClientID: adminID, AccessToken: adminToken}})
	return q
}

// appendFile adds text to the file at path.
func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// replaceInFile replaces the one occurrence of old in the file at path.
func replaceInFile(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(b), old) != 1 {
		t.Fatalf("%s: want one %q in:\n%s", path, old, b)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
}
