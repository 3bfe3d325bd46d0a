package tc

import (
	"crypto/hmac"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hawkResult is what a verified Hawk request authenticated as.
type hawkResult struct {
	ClientID string
	Nonce    string
	Ext      testExt
	Cert     *testCert // set when ext carries a certificate
}

// testExt is the decoded Taskcluster ext of a request.
type testExt struct {
	Certificate      json.RawMessage
	AuthorizedScopes []string
	HasAuthorized    bool
}

// testCert is what the tests read of a temporary-credentials certificate.
type testCert struct {
	Issuer string   `json:"issuer"`
	Scopes []string `json:"scopes"`
}

// hawkAttr matches one `name="value"` attribute of a Hawk header.
var hawkAttr = regexp.MustCompile(`(\w+)="([^"]*)"`)

// verifier checks Hawk headers as a service would: it recomputes the MAC
// over the request as received, with the accessToken of the clientId.
// Checking certificates cryptographically is the server's business
// (worker/localqueue); for a client it is enough that the request is signed
// with the temporary accessToken and carries the certificate as given, so
// temporary clients are registered by clientId like permanent ones.
type verifier struct {
	clients map[string]string // clientId → accessToken

	mu     sync.Mutex
	nonces map[string]bool
}

func newVerifier(clients map[string]string) *verifier {
	return &verifier{clients: clients, nonces: map[string]bool{}}
}

func (v *verifier) verify(r *http.Request) (hawkResult, error) {
	var res hawkResult
	h, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Hawk ")
	if !ok {
		return res, errors.New("not a Hawk header")
	}
	attrs := map[string]string{}
	for _, m := range hawkAttr.FindAllStringSubmatch(h, -1) {
		attrs[m[1]] = m[2]
	}
	ts, err := strconv.ParseInt(attrs["ts"], 10, 64)
	if err != nil {
		return res, fmt.Errorf("timestamp: %w", err)
	}
	if d := time.Since(time.Unix(ts, 0)); d > 15*time.Minute || d < -15*time.Minute {
		return res, fmt.Errorf("timestamp %d out of range", ts)
	}
	host, port, err := net.SplitHostPort(r.Host)
	if err != nil {
		return res, err
	}
	a := HawkArtifacts{
		ID: attrs["id"], TS: ts, Nonce: attrs["nonce"], Method: r.Method, Resource: r.RequestURI,
		Host: host, Hash: attrs["hash"], Ext: attrs["ext"],
	}
	if a.Port, err = strconv.Atoi(port); err != nil {
		return res, err
	}
	key, ok := v.clients[a.ID]
	if !ok {
		return res, fmt.Errorf("unknown client %q", a.ID)
	}
	if want := a.MAC(key); attrs["mac"] == "" || !hmac.Equal([]byte(want), []byte(attrs["mac"])) {
		return res, errors.New("bad MAC")
	}
	if a.Ext != "" {
		raw, err := base64.StdEncoding.DecodeString(a.Ext)
		if err != nil {
			return res, fmt.Errorf("ext: %w", err)
		}
		var ext struct {
			Certificate      json.RawMessage `json:"certificate"`
			AuthorizedScopes *[]string       `json:"authorizedScopes"`
		}
		if err := json.Unmarshal(raw, &ext); err != nil {
			return res, fmt.Errorf("ext: %w", err)
		}
		res.Ext.Certificate = ext.Certificate
		if ext.AuthorizedScopes != nil {
			res.Ext.AuthorizedScopes, res.Ext.HasAuthorized = *ext.AuthorizedScopes, true
		}
		if ext.Certificate != nil {
			res.Cert = &testCert{}
			if err := json.Unmarshal(ext.Certificate, res.Cert); err != nil {
				return res, fmt.Errorf("ext certificate is not an object: %w", err)
			}
		}
	}
	v.mu.Lock()
	seen := v.nonces[a.Nonce]
	v.nonces[a.Nonce] = true
	v.mu.Unlock()
	if seen {
		return res, fmt.Errorf("nonce %q reused", a.Nonce)
	}
	res.ClientID, res.Nonce = a.ID, a.Nonce
	return res, nil
}

// fakeService starts a server whose handler only sees requests that carry a
// valid Hawk header (or none, then auth is nil); bad signatures fail the test
// and get a 401.
func fakeService(t *testing.T, v *verifier, h func(w http.ResponseWriter, r *http.Request, auth *hawkResult)) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var auth *hawkResult
		if r.Header.Get("Authorization") != "" {
			res, err := v.verify(r)
			if err != nil {
				t.Errorf("%s %s: Hawk verification failed: %v", r.Method, r.RequestURI, err)
				writeTCError(w, http.StatusUnauthorized, "AuthenticationFailed", err.Error())
				return
			}
			auth = &res
		}
		h(w, r, auth)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func writeTCError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"code": code, "message": msg,
		"requestInfo": map[string]any{"method": "x", "params": map[string]any{}, "payload": map[string]any{}, "time": time.Now()},
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func readBody(t *testing.T, r *http.Request) []byte {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Errorf("read request body: %v", err)
	}
	return b
}

// countingTransport counts round trips.
type countingTransport struct {
	base http.RoundTripper
	n    atomic.Int32
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.base.RoundTrip(r)
}

const (
	testClientID = "project/docker-worker/test"
	testToken    = "permanent-secret"
	testIssuer   = "static/taskcluster/queue"
	// testTempID and testTempToken are temporary credentials, as a claim
	// hands them out.
	testTempID    = "task-client/abc/0/on/wg/wid/until/1795320599.842"
	testTempToken = "temporary-secret"
)

func testVerifier() *verifier {
	return newVerifier(map[string]string{testClientID: testToken, testTempID: testTempToken})
}

// testTempCreds are temporary credentials of testTempID whose certificate
// grants scopes.
func testTempCreds(t *testing.T, scopes ...string) Credentials {
	t.Helper()
	cert, err := json.Marshal(map[string]any{
		"version": 1, "scopes": scopes, "start": 1700000000000, "expiry": 1795320599842,
		"seed": strings.Repeat("s", 44), "signature": "c2lnbmF0dXJl", "issuer": testIssuer,
	})
	if err != nil {
		t.Fatal(err)
	}
	return Credentials{ClientID: testTempID, AccessToken: testTempToken, Certificate: string(cert)}
}

// testClient is a client with permanent credentials and tiny retry delays.
func testClient(srv *httptest.Server, retries int) *Client {
	return New(Config{
		RootURL:     srv.URL,
		Credentials: &Credentials{ClientID: testClientID, AccessToken: testToken},
		HTTPClient:  srv.Client(),
		Retries:     retries,
		BaseDelay:   time.Millisecond,
		MaxDelay:    5 * time.Millisecond,
	})
}
