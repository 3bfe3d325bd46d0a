package tc

import (
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hawkResult is what a verified Hawk request authenticated as.
type hawkResult struct {
	ClientID string
	Nonce    string
	Ext      Ext
	Cert     *Certificate // set for temporary credentials
}

// verifier checks Hawk headers the way the queue does: it recomputes the MAC
// over the request as received, with either a permanent client's accessToken
// or, for a certificate in ext, the token derived from the issuer's.
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
	a, mac, err := ParseHawkHeader(r.Header.Get("Authorization"))
	if err != nil {
		return res, err
	}
	a.Method = r.Method
	a.Resource = r.RequestURI
	if a.Host, a.Port, err = SplitHostPort(r.Host, r.TLS != nil); err != nil {
		return res, err
	}
	if d := time.Since(time.Unix(a.TS, 0)); d > 15*time.Minute || d < -15*time.Minute {
		return res, fmt.Errorf("timestamp %d out of range", a.TS)
	}
	ext, err := ParseExt(a.Ext)
	if err != nil {
		return res, err
	}
	key, ok := v.clients[a.ID]
	if ext.Certificate != nil {
		var c Certificate
		if err := json.Unmarshal(ext.Certificate, &c); err != nil {
			return res, fmt.Errorf("certificate: %w", err)
		}
		issuerKey, ok := v.clients[c.Issuer]
		if !ok {
			return res, fmt.Errorf("unknown issuer %q", c.Issuer)
		}
		if _, key, err = VerifyCertificate(ext.Certificate, a.ID, issuerKey, time.Now()); err != nil {
			return res, err
		}
		res.Cert = &c
	} else if !ok {
		return res, fmt.Errorf("unknown client %q", a.ID)
	}
	if want := a.MAC(key); !hmac.Equal([]byte(want), []byte(mac)) {
		return res, errors.New("bad MAC")
	}
	v.mu.Lock()
	seen := v.nonces[a.Nonce]
	v.nonces[a.Nonce] = true
	v.mu.Unlock()
	if seen {
		return res, fmt.Errorf("nonce %q reused", a.Nonce)
	}
	res.ClientID, res.Nonce, res.Ext = a.ID, a.Nonce, ext
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
	testIssuerAT = "queue-issuer-secret"
)

func testVerifier() *verifier {
	return newVerifier(map[string]string{testClientID: testToken, testIssuer: testIssuerAT})
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
