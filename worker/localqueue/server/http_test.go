package server

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The queue's API and the web page share the root URL: /api/ goes to the
// queue (full path), the rest to the page (root path stripped).
func TestHandlerRoutesAPIAndPage(t *testing.T) {
	record := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name+" "+r.URL.Path) })
	}
	for _, tc := range []struct {
		root, path, want string
		status           int
	}{
		{"http://127.0.0.1:8080", "/", "ui /", 200},
		{"http://127.0.0.1:8080", "/tasks/x", "ui /tasks/x", 200},
		{"http://127.0.0.1:8080", "/api/queue/v1/ping", "api /api/queue/v1/ping", 200},
		{"http://q.example/tc", "/tc/api/queue/v1/ping", "api /tc/api/queue/v1/ping", 200},
		{"http://q.example/tc", "/tc/submit", "ui /submit", 200},
		{"http://q.example/tc", "/tc/", "ui /", 200},
		{"http://q.example/tc", "/other", "", 404},
		{"http://q.example/tc", "/tc", "", 301},
	} {
		h := Handler(tc.root, record("api"), record("ui"))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
		if rec.Code != tc.status || (tc.want != "" && rec.Body.String() != tc.want) {
			t.Errorf("root %s, GET %s: %d %q, want %d %q", tc.root, tc.path, rec.Code, rec.Body.String(), tc.status, tc.want)
		}
	}
}

// A started queue serves the page at its root URL, and signs for the admin
// only with UIAdmin.
func TestStartServesTheWebPage(t *testing.T) {
	for _, uiAdmin := range []bool{false, true} {
		q, _ := start(t, Config{DataDir: t.TempDir()}, Options{ClaimWait: time.Second, UIAdmin: uiAdmin})
		res, err := http.Get(q.RootURL + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || !strings.Contains(string(body), "/ui/static/list.js") {
			t.Errorf("GET /: %d\n%s", res.StatusCode, body)
		}
		res, err = http.Get(q.RootURL + "/ui/api/config")
		if err != nil {
			t.Fatal(err)
		}
		var c struct {
			AdminSigning bool `json:"adminSigning"`
		}
		err = json.NewDecoder(res.Body).Decode(&c)
		res.Body.Close()
		if err != nil || c.AdminSigning != uiAdmin {
			t.Errorf("UIAdmin %v: config says adminSigning %v (%v)", uiAdmin, c.AdminSigning, err)
		}
	}
}

// UIAdmin needs the admin client: a queue whose config names clients and
// that was not asked for the admin refuses to start with it.
func TestStartRefusesUIAdminWithoutAdmin(t *testing.T) {
	cfg := Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", Clients: []Client{{ClientID: "ci", AccessToken: "ci-secret", Scopes: []string{"*"}}}}
	_, err := Start(t.Context(), cfg, Options{UIAdmin: true})
	if err == nil || !strings.Contains(err.Error(), "admin client") {
		t.Fatalf("Start = %v, want the missing admin client named", err)
	}
	// The port is free again: a second start on the same data directory works.
	q, _ := start(t, Config{DataDir: cfg.DataDir, Clients: cfg.Clients}, Options{UIAdmin: true, WithAdmin: true})
	if q.Admin == nil {
		t.Fatal("no admin with WithAdmin")
	}
}
