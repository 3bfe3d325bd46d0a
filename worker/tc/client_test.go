package tc

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRequestSignsEscapedPathAndQuery(t *testing.T) {
	v := testVerifier()
	var gotURI string
	var gotAuth *hawkResult
	srv := fakeService(t, v, func(w http.ResponseWriter, r *http.Request, auth *hawkResult) {
		gotURI, gotAuth = r.RequestURI, auth
		writeJSON(w, map[string]string{"ok": "yes"})
	})
	c := testClient(srv, -1)
	var out struct{ OK string }
	q := url.Values{"continuationToken": {"a/b c+d"}, "limit": {"2"}}
	path := "/task/" + PathEscape("prov/type") + "/runs/0/artifacts/" + PathEscape("public/a b;c")
	if err := c.Request(t.Context(), "queue", http.MethodGet, path, q, nil, &out); err != nil {
		t.Fatal(err)
	}
	if want := "/api/queue/v1/task/prov%2Ftype/runs/0/artifacts/public%2Fa%20b%3Bc?continuationToken=a%2Fb+c%2Bd&limit=2"; gotURI != want {
		t.Errorf("request URI = %q, want %q", gotURI, want)
	}
	if gotAuth == nil || gotAuth.ClientID != testClientID || gotAuth.Ext.Certificate != nil || gotAuth.Ext.HasAuthorized {
		t.Errorf("auth = %+v", gotAuth)
	}
	if out.OK != "yes" {
		t.Errorf("out = %+v", out)
	}
}

func TestRequestUnauthenticated(t *testing.T) {
	var sawAuth bool
	srv := fakeService(t, testVerifier(), func(w http.ResponseWriter, r *http.Request, auth *hawkResult) {
		sawAuth = auth != nil
		w.WriteHeader(http.StatusNoContent)
	})
	c := New(Config{RootURL: srv.URL + "/", HTTPClient: srv.Client()})
	var out map[string]any
	if err := c.Request(t.Context(), "queue", http.MethodGet, "/ping", nil, nil, &out); err != nil {
		t.Fatal(err)
	}
	if sawAuth || out != nil {
		t.Errorf("sawAuth=%v out=%v", sawAuth, out)
	}
}

func TestRequestTemporaryCredentials(t *testing.T) {
	v := testVerifier()
	creds := testTempCreds(t, "queue:reclaim-task:abc/0")
	tempID := creds.ClientID
	var got *hawkResult
	srv := fakeService(t, v, func(w http.ResponseWriter, r *http.Request, auth *hawkResult) {
		got = auth
		w.Write([]byte("{}"))
	})
	base := testClient(srv, -1)
	c := base.WithCredentials(creds)
	if err := c.Request(t.Context(), "queue", http.MethodPost, "/task/abc/runs/0/reclaim", nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	if got == nil || got.ClientID != tempID || got.Cert == nil || got.Cert.Issuer != testIssuer {
		t.Fatalf("auth = %+v", got)
	}
	if diff := cmp.Diff([]string{"queue:reclaim-task:abc/0"}, got.Cert.Scopes); diff != "" {
		t.Errorf("certificate scopes (-want +got):\n%s", diff)
	}
	// The original client still signs with the permanent credentials.
	if err := base.Request(t.Context(), "queue", http.MethodGet, "/ping", nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	if got.ClientID != testClientID || got.Cert != nil {
		t.Errorf("base client auth = %+v", got)
	}
}

func TestRequestAuthorizedScopes(t *testing.T) {
	var got *hawkResult
	srv := fakeService(t, testVerifier(), func(w http.ResponseWriter, r *http.Request, auth *hawkResult) {
		got = auth
	})
	scopes := []string{"queue:create-task:lowest:prov/wt", "queue:scheduler-id:sched"}
	c := New(Config{
		RootURL:     srv.URL,
		HTTPClient:  srv.Client(),
		Credentials: &Credentials{ClientID: testClientID, AccessToken: testToken, AuthorizedScopes: scopes},
	})
	if err := c.Request(t.Context(), "queue", http.MethodPut, "/task/x", nil, map[string]int{"a": 1}, nil); err != nil {
		t.Fatal(err)
	}
	if got == nil || !got.Ext.HasAuthorized {
		t.Fatalf("auth = %+v", got)
	}
	if diff := cmp.Diff(scopes, got.Ext.AuthorizedScopes); diff != "" {
		t.Errorf("authorizedScopes (-want +got):\n%s", diff)
	}
}

func TestAPIErrors(t *testing.T) {
	srv := fakeService(t, testVerifier(), func(w http.ResponseWriter, r *http.Request, _ *hawkResult) {
		switch r.URL.Path {
		case "/api/queue/v1/task/missing":
			writeTCError(w, 404, "ResourceNotFound", "no such task")
		case "/api/queue/v1/task/conflict":
			writeTCError(w, 409, "RequestConflict", "run already resolved")
		default:
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte("  <html><body>Bad Gateway from the load balancer</body></html>\n"))
		}
	})
	c := testClient(srv, -1)
	get := func(path string) error {
		return c.Request(t.Context(), "queue", http.MethodGet, path, nil, nil, nil)
	}

	err := get("/task/missing")
	var apiErr *APIError
	if !errors.As(err, &apiErr) || !IsNotFound(err) || IsConflict(err) || StatusCode(err) != 404 {
		t.Fatalf("err = %#v", err)
	}
	want := &APIError{StatusCode: 404, Code: "ResourceNotFound", Message: "no such task", Method: "GET", URL: srv.URL + "/api/queue/v1/task/missing"}
	if diff := cmp.Diff(want, apiErr); diff != "" {
		t.Errorf("APIError (-want +got):\n%s", diff)
	}
	if s := err.Error(); !strings.Contains(s, "404 ResourceNotFound: no such task") {
		t.Errorf("Error() = %q", s)
	}

	err = get("/task/conflict")
	if !IsConflict(err) || IsNotFound(err) || !errors.As(err, &apiErr) || apiErr.Code != "RequestConflict" {
		t.Errorf("err = %#v", err)
	}

	err = get("/task/gateway")
	if !errors.As(err, &apiErr) {
		t.Fatalf("err = %#v", err)
	}
	if apiErr.StatusCode != 502 || apiErr.Code != "" || apiErr.Message != "<html><body>Bad Gateway from the load balancer</body></html>" {
		t.Errorf("APIError = %+v", apiErr)
	}
	if s := err.Error(); !strings.Contains(s, "502 Bad Gateway") {
		t.Errorf("Error() = %q", s)
	}

	if StatusCode(nil) != 0 || StatusCode(errors.New("x")) != 0 || IsNotFound(nil) {
		t.Error("helpers on non-API errors")
	}
}

func TestAPIErrorSnippetIsBounded(t *testing.T) {
	body := []byte(strings.Repeat("é", 1000))
	e := newAPIError("GET", "http://x", 500, body)
	if len(e.Message) > snippetLen+len("…") || !strings.HasSuffix(e.Message, "…") || !strings.HasPrefix(e.Message, "éé") {
		t.Errorf("Message has %d bytes: %q", len(e.Message), e.Message[:20])
	}
	if strings.ContainsRune(e.Message, '\uFFFD') {
		t.Error("snippet cut inside a rune")
	}
}

func TestRetriesServerErrorsWithFreshSignatures(t *testing.T) {
	var mu sync.Mutex
	var nonces []string
	var bodies []string
	srv := fakeService(t, testVerifier(), func(w http.ResponseWriter, r *http.Request, auth *hawkResult) {
		mu.Lock()
		defer mu.Unlock()
		if auth == nil {
			t.Error("unsigned attempt")
			return
		}
		nonces = append(nonces, auth.Nonce)
		bodies = append(bodies, string(readBody(t, r)))
		if len(nonces) < 3 {
			writeTCError(w, 500, "InternalServerError", "oops")
			return
		}
		writeJSON(w, map[string]int{"n": len(nonces)})
	})
	c := testClient(srv, 5)
	var out struct{ N int }
	if err := c.Request(t.Context(), "queue", http.MethodPost, "/x", nil, map[string]string{"k": "v"}, &out); err != nil {
		t.Fatal(err)
	}
	if out.N != 3 || len(nonces) != 3 {
		t.Fatalf("attempts = %d, out = %+v", len(nonces), out)
	}
	if nonces[0] == nonces[1] || nonces[1] == nonces[2] || nonces[0] == nonces[2] {
		t.Errorf("nonces reused: %q", nonces)
	}
	for i, b := range bodies {
		if b != `{"k":"v"}` {
			t.Errorf("attempt %d body = %q", i, b)
		}
	}
}

func TestRetriesGiveUp(t *testing.T) {
	var n int
	srv := fakeService(t, testVerifier(), func(w http.ResponseWriter, r *http.Request, _ *hawkResult) {
		n++
		writeTCError(w, 503, "ServiceUnavailable", "down")
	})
	err := testClient(srv, 2).Request(t.Context(), "queue", http.MethodGet, "/x", nil, nil, nil)
	if n != 3 || StatusCode(err) != 503 || !strings.Contains(err.Error(), "3 attempts") {
		t.Errorf("attempts = %d, err = %v", n, err)
	}
}

func TestClientErrorsAreNotRetried(t *testing.T) {
	var n int
	srv := fakeService(t, testVerifier(), func(w http.ResponseWriter, r *http.Request, _ *hawkResult) {
		n++
		writeTCError(w, 400, "InputValidationError", "bad")
	})
	err := testClient(srv, 5).Request(t.Context(), "queue", http.MethodPost, "/x", nil, struct{}{}, nil)
	if n != 1 || StatusCode(err) != 400 {
		t.Errorf("attempts = %d, err = %v", n, err)
	}
}

func TestNetworkErrorsAreRetried(t *testing.T) {
	srv := fakeService(t, testVerifier(), func(http.ResponseWriter, *http.Request, *hawkResult) {})
	srv.Close()
	ct := &countingTransport{base: http.DefaultTransport}
	c := New(Config{
		RootURL:     srv.URL,
		Credentials: &Credentials{ClientID: testClientID, AccessToken: testToken},
		HTTPClient:  &http.Client{Transport: ct},
		Retries:     3,
		BaseDelay:   time.Millisecond,
		MaxDelay:    2 * time.Millisecond,
	})
	start := time.Now()
	err := c.Request(t.Context(), "queue", http.MethodGet, "/x", nil, nil, nil)
	if err == nil {
		t.Fatal("request to a closed server succeeded")
	}
	if got := ct.n.Load(); got != 4 {
		t.Errorf("attempts = %d, want 4", got)
	}
	if StatusCode(err) != 0 {
		t.Errorf("network error has status %d", StatusCode(err))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestContextCancellationStopsRetrying(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var n int
	srv := fakeService(t, testVerifier(), func(w http.ResponseWriter, r *http.Request, _ *hawkResult) {
		n++
		cancel()
		writeTCError(w, 500, "InternalServerError", "oops")
	})
	c := New(Config{
		RootURL: srv.URL, HTTPClient: srv.Client(),
		Retries: 5, BaseDelay: time.Hour, MaxDelay: time.Hour,
	})
	start := time.Now()
	err := c.Request(ctx, "queue", http.MethodGet, "/x", nil, nil, nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if n != 1 {
		t.Errorf("attempts = %d", n)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}

	// Already cancelled: no attempt succeeds and the error says why.
	err = c.Request(ctx, "queue", http.MethodGet, "/x", nil, nil, nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v", err)
	}
}

func TestDecodeErrorIsReported(t *testing.T) {
	srv := fakeService(t, testVerifier(), func(w http.ResponseWriter, r *http.Request, _ *hawkResult) {
		w.Write([]byte("not json"))
	})
	var out map[string]any
	err := testClient(srv, -1).Request(t.Context(), "queue", http.MethodGet, "/x", nil, nil, &out)
	if err == nil || !strings.Contains(err.Error(), "decode response") {
		t.Errorf("err = %v", err)
	}
}

// The client's retry delays follow Taskcluster's client convention: the
// n-th retry waits BaseDelay × 2^(n−1), capped at MaxDelay, ±25 %.
func TestRetryBackoffPolicy(t *testing.T) {
	c := New(Config{RootURL: "https://tc.example.com", BaseDelay: time.Second, MaxDelay: 10 * time.Second})
	p := c.backoff
	for _, tt := range []struct {
		retry int
		u     float64
		want  time.Duration
	}{
		{1, 0.5, time.Second},
		{1, 0, 750 * time.Millisecond},
		{1, 1, 1250 * time.Millisecond},
		{3, 0.5, 4 * time.Second},
		{5, 0.5, 10 * time.Second}, // 16s capped
		{5, 1, 12500 * time.Millisecond},
	} {
		p.Rand = func() float64 { return tt.u }
		if got := p.Delay(tt.retry); got != tt.want {
			t.Errorf("retry %d, random %v: delay %v, want %v", tt.retry, tt.u, got, tt.want)
		}
	}
}

func TestNewDefaults(t *testing.T) {
	c := New(Config{RootURL: "https://tc.example.com/"})
	if c.retries != DefaultRetries || c.backoff.Base != DefaultBaseDelay || c.backoff.Max != DefaultMaxDelay || c.backoff.Jitter != retryJitter || c.now == nil || c.http == nil || c.creds != nil {
		t.Errorf("defaults not applied: %+v", c)
	}
	if got := c.RootURL(); got != "https://tc.example.com" {
		t.Errorf("RootURL() = %q", got)
	}
	if got := New(Config{Retries: -1}).retries; got != 0 {
		t.Errorf("Retries -1 → %d", got)
	}
	scopes := []string{"a"}
	c2 := c.WithCredentials(Credentials{ClientID: "x", AuthorizedScopes: scopes})
	scopes[0] = "changed"
	if c.creds != nil || c2.creds.ClientID != "x" || c2.creds.AuthorizedScopes[0] != "a" {
		t.Errorf("WithCredentials shares state: %+v %+v", c.creds, c2.creds)
	}
}

func TestPathEscape(t *testing.T) {
	for in, want := range map[string]string{
		"public/logs/live.log": "public%2Flogs%2Flive.log",
		"prov/type":            "prov%2Ftype",
		"a b?c#d%e":            "a%20b%3Fc%23d%25e",
		"plain-Name_1.txt":     "plain-Name_1.txt",
	} {
		if got := PathEscape(in); got != want {
			t.Errorf("PathEscape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRequestNeedsAbsoluteRootURL(t *testing.T) {
	ct := &countingTransport{base: http.DefaultTransport}
	c := New(Config{RootURL: "tc.example.com", HTTPClient: &http.Client{Transport: ct}, BaseDelay: time.Hour})
	if err := c.Request(t.Context(), "queue", http.MethodGet, "/ping", nil, nil, nil); err == nil || ct.n.Load() != 0 {
		t.Errorf("err = %v after %d attempts", err, ct.n.Load())
	}
}

func TestRetryUntilKeepsTryingPastTheAttemptCount(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 8 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	c := New(Config{RootURL: srv.URL, Retries: 2, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond})
	if err := c.Request(context.Background(), "queue", "GET", "/ping", nil, nil, nil); err == nil {
		t.Fatal("want an error after 3 attempts without a retry deadline")
	}
	calls.Store(0)
	ctx := RetryUntil(context.Background(), time.Now().Add(time.Minute))
	if err := c.Request(ctx, "queue", "GET", "/ping", nil, nil, nil); err != nil {
		t.Fatalf("with a retry deadline: %v", err)
	}
	if got := calls.Load(); got != 9 {
		t.Fatalf("attempts = %d, want 9", got)
	}
	calls.Store(-1000)
	ctx = RetryUntil(context.Background(), time.Now().Add(50*time.Millisecond))
	err := c.Request(ctx, "queue", "GET", "/ping", nil, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "retry deadline") {
		t.Fatalf("past the deadline: %v", err)
	}
}
