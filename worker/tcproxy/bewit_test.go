package tcproxy_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.dockerworker.dev/docker-worker/worker/localqueue"
	"go.dockerworker.dev/docker-worker/worker/tc"
	"go.dockerworker.dev/docker-worker/worker/tcproxy"
)

// queueWithClaim serves the embedded queue and returns its root URL and
// the temporary credentials of a claimed run of a task with taskScopes.
func queueWithClaim(t *testing.T, taskScopes []string) (string, tc.Credentials) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	root := "http://" + ln.Addr().String()
	q, err := localqueue.New(localqueue.Config{RootURL: root, DataDir: t.TempDir(),
		Clients: []localqueue.Client{{ClientID: "admin", AccessToken: "secret", Scopes: []string{"*"}}}})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- localqueue.Serve(ctx, ln, q) }()
	t.Cleanup(func() { cancel(); <-done })

	admin := tc.New(tc.Config{RootURL: root, Credentials: &tc.Credentials{ClientID: "admin", AccessToken: "secret"}, Retries: -1})
	now := time.Now().UTC()
	ts := func(t time.Time) string { return t.Format("2006-01-02T15:04:05.000Z") }
	scopes, _ := json.Marshal(taskScopes)
	def := []byte(`{"provisionerId":"p","workerType":"bewit","schedulerId":"s","created":"` + ts(now) +
		`","deadline":"` + ts(now.Add(time.Hour)) + `","expires":"` + ts(now.Add(24*time.Hour)) +
		`","scopes":` + string(scopes) + `,"payload":{},"metadata":{"name":"n","description":"d","owner":"o@localhost","source":"https://localhost/"}}`)
	if _, err := admin.CreateTask(t.Context(), "fXq9Yh4sRfOQS1w3i2o5Aw", def); err != nil {
		t.Fatal(err)
	}
	resp, err := admin.ClaimWork(t.Context(), "p/bewit", tc.ClaimWorkRequest{Tasks: 1, WorkerGroup: "g", WorkerID: "w"})
	if err != nil || len(resp.Tasks) != 1 {
		t.Fatalf("claim: %v (%d tasks)", err, len(resp.Tasks))
	}
	return root, resp.Tasks[0].Credentials
}

// noFollow does not follow redirects.
var noFollow = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// do sends a request and returns its status, Location and body.
func do(t *testing.T, c *http.Client, method, rawURL, body string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, rawURL, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header.Get("Location"), string(b)
}

// A URL signed by POST /bewit is accepted by the embedded queue without
// any header, with the run's temporary credentials restricted to the
// authorized scopes; changed or expired, it is refused.
func TestBewitSignsForTheQueue(t *testing.T) {
	authorized := []string{"auth:current-scopes", "queue:get-artifact:private/x"}
	root, creds := queueWithClaim(t, append(slices.Clone(authorized), "queue:get-artifact:private/other"))
	var calls atomic.Int32
	var now atomic.Value
	now.Store(time.Now())
	p, err := tcproxy.New(tcproxy.Config{RootURL: root, AuthorizedScopes: authorized,
		Credentials: func() tcproxy.Credentials {
			calls.Add(1)
			return tcproxy.Credentials{ClientID: creds.ClientID, AccessToken: creds.AccessToken, Certificate: creds.Certificate}
		},
		Now: func() time.Time { return now.Load().(time.Time) },
	})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(p)
	t.Cleanup(front.Close)

	target := root + "/api/auth/v1/scopes/current"
	for _, u := range []string{target, target + "?a=1&b=%2F", "  " + target + "\n"} {
		status, loc, body := do(t, noFollow, "POST", front.URL+tcproxy.BewitPath, u)
		if status != http.StatusSeeOther || !strings.HasPrefix(loc, strings.TrimSpace(u)) || !strings.Contains(loc, "bewit=") || body != loc {
			t.Fatalf("POST /bewit %q: %d, Location %q, body %q; want 303 to the URL with a bewit, the URL as body", u, status, loc, body)
		}
		status, _, body = do(t, http.DefaultClient, "GET", loc, "")
		if status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", loc, status, body)
		}
		var got struct{ Scopes []string }
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(authorized, got.Scopes); diff != "" {
			t.Errorf("the bewit's request carries other scopes than the authorized ones (-want +got):\n%s", diff)
		}
	}
	if calls.Load() != 3 {
		t.Errorf("credentials read %d times for 3 signatures, want once each", calls.Load())
	}

	_, loc, _ := do(t, noFollow, "POST", front.URL+tcproxy.BewitPath, target)
	for name, u := range map[string]string{
		"a parameter before the bewit": strings.Replace(loc, "?bewit=", "?x=1&bewit=", 1),
		"a parameter after the bewit":  loc + "&x=1",
		"another host name":            strings.Replace(loc, "127.0.0.1", "localhost", 1),
	} {
		if status, _, body := do(t, http.DefaultClient, "GET", u, ""); status != http.StatusUnauthorized {
			t.Errorf("%s: %d %s, want 401", name, status, body)
		}
	}
	// Without the bewit the request is anonymous.
	if _, _, body := do(t, http.DefaultClient, "GET", target, ""); strings.Contains(body, "private/x") {
		t.Errorf("an unsigned request got the run's scopes: %s", body)
	}

	// Signed two hours ago, the URL expired an hour ago.
	now.Store(time.Now().Add(-2 * time.Hour))
	_, loc, _ = do(t, noFollow, "POST", front.URL+tcproxy.BewitPath, target)
	if status, _, body := do(t, http.DefaultClient, "GET", loc, ""); status != http.StatusUnauthorized || !strings.Contains(body, "expired") {
		t.Errorf("expired bewit: %d %s, want 401 naming the expiry", status, body)
	}
}

// The proxy's own endpoints refuse what they do not serve, and clients
// outside the allowed addresses.
func TestBewitAndCredentialsRefusals(t *testing.T) {
	allowed := netip.MustParsePrefix("127.0.0.0/8")
	creds := func() tcproxy.Credentials { return tcproxy.Credentials{ClientID: "c", AccessToken: "t"} }
	p, err := tcproxy.New(tcproxy.Config{RootURL: "http://tc.example.com", Credentials: creds,
		Allow: func(a netip.Addr) bool { return allowed.Contains(a) }})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(p)
	t.Cleanup(front.Close)
	tests := []struct {
		name, method, path, body string
		want                     int
	}{
		{"bewit GET", "GET", tcproxy.BewitPath, "", http.StatusMethodNotAllowed},
		{"bewit of nothing", "POST", tcproxy.BewitPath, "", http.StatusBadRequest},
		{"bewit of a relative URL", "POST", tcproxy.BewitPath, "/queue/v1/task/x", http.StatusBadRequest},
		{"bewit of another scheme", "POST", tcproxy.BewitPath, "ftp://tc.example.com/x", http.StatusBadRequest},
		{"bewit with a fragment", "POST", tcproxy.BewitPath, "https://tc.example.com/x#y", http.StatusBadRequest},
		{"bewit of a huge URL", "POST", tcproxy.BewitPath, "https://tc.example.com/" + strings.Repeat("x", 70<<10), http.StatusRequestEntityTooLarge},
		{"credentials PUT", "PUT", tcproxy.CredentialsPath, `{"clientId":"a","accessToken":"b"}`, http.StatusForbidden},
		{"credentials GET", "GET", tcproxy.CredentialsPath, "", http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		if status, _, body := do(t, noFollow, tt.method, front.URL+tt.path, tt.body); status != tt.want {
			t.Errorf("%s: %d %s, want %d", tt.name, status, body, tt.want)
		}
	}
	// The signature of a URL with neither path nor port covers "/" and 443.
	status, loc, _ := do(t, noFollow, "POST", front.URL+tcproxy.BewitPath, "https://tc.example.com")
	if status != http.StatusSeeOther || !strings.HasPrefix(loc, "https://tc.example.com/?bewit=") {
		t.Errorf("bewit of a bare origin: %d to %q", status, loc)
	}

	allowed = netip.MustParsePrefix("10.0.0.0/8")
	for _, path := range []string{tcproxy.BewitPath, tcproxy.CredentialsPath} {
		if status, _, _ := do(t, noFollow, "POST", front.URL+path, "https://tc.example.com/x"); status != http.StatusForbidden {
			t.Errorf("POST %s from outside: %d, want 403", path, status)
		}
	}
}
