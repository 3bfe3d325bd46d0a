package localqueue

import (
	"crypto/hmac"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.dockerworker.dev/docker-worker/worker/localqueue/internal/hawkserver"
	"go.dockerworker.dev/docker-worker/worker/scopes"
)

// issuerClientID is the client that issues the per-run temporary
// credentials, as on a real deployment.
const issuerClientID = "static/taskcluster/queue"

// maxClockSkew is how far a Hawk timestamp may be from the queue's clock.
const maxClockSkew = 15 * time.Minute

// authInfo is who a request was authenticated as, and the scopes it
// carries: the client's scopes, or a certificate's scopes (which its issuer
// must hold), replaced by authorizedScopes when given (which the former
// must satisfy), then expanded by the roles, as Taskcluster's auth service
// does.
type authInfo struct {
	ClientID string
	Scopes   []string
}

// authenticate verifies the request's Hawk Authorization header. It
// returns nil, nil when the request has none.
func (q *Queue) authenticate(r *http.Request, body []byte, now time.Time) (*authInfo, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, nil
	}
	a, mac, err := hawkserver.ParseHeader(h)
	if err != nil {
		return nil, err
	}
	if skew := now.Sub(time.Unix(a.TS, 0)).Abs(); skew > maxClockSkew {
		return nil, fmt.Errorf("hawk timestamp %d is %s away from the server's clock (at most %s allowed)", a.TS, skew.Round(time.Second), maxClockSkew)
	}
	a.Method = r.Method
	a.Resource = r.RequestURI
	if a.Resource == "" {
		a.Resource = r.URL.RequestURI()
	}
	a.Host, a.Port, err = hawkserver.SplitHostPort(r.Host, r.TLS != nil)
	if err != nil {
		return nil, fmt.Errorf("host header: %w", err)
	}
	ext, err := hawkserver.ParseExt(a.Ext)
	if err != nil {
		return nil, err
	}

	var key string
	var granted []string
	if ext.Certificate != nil {
		issuer, err := hawkserver.CertificateIssuer(ext.Certificate)
		if err != nil {
			return nil, err
		}
		if issuer == "" { // unnamed temporary credentials: the issuer signs in its own name
			issuer = a.ID
		}
		issuerKey, issuerScopes, ok := q.lookupClient(issuer)
		if !ok {
			return nil, fmt.Errorf("ext.certificate issuer %q is not a known client", issuer)
		}
		cert, derived, err := hawkserver.VerifyCertificate(ext.Certificate, a.ID, issuerKey, now)
		if err != nil {
			return nil, fmt.Errorf("client %q: %w", a.ID, err)
		}
		if !scopes.AllSatisfied(issuerScopes, cert.Scopes) {
			return nil, fmt.Errorf("ext.certificate issuer %q does not have sufficient scopes for the certificate's scopes", issuer)
		}
		key, granted = derived, cert.Scopes
	} else {
		clientKey, clientScopes, ok := q.lookupClient(a.ID)
		if !ok || a.ID == issuerClientID {
			return nil, fmt.Errorf("unknown clientId %q", a.ID)
		}
		key, granted = clientKey, clientScopes
	}
	if !hmac.Equal([]byte(a.MAC(key)), []byte(mac)) {
		return nil, fmt.Errorf("bad Hawk MAC for client %q", a.ID)
	}
	if a.Hash != "" && !hmac.Equal([]byte(hawkserver.PayloadHash(r.Header.Get("Content-Type"), body)), []byte(a.Hash)) {
		return nil, errors.New("hawk payload hash does not match the body")
	}
	if ext.HasAuthorized {
		if !scopes.AllSatisfied(q.expand(granted), ext.AuthorizedScopes) {
			return nil, errors.New("ext.authorizedScopes oversteps your scopes")
		}
		granted = ext.AuthorizedScopes
	}
	if !q.nonces.use(a.ID+"\x00"+a.Nonce+"\x00"+strconv.FormatInt(a.TS, 10), time.Unix(a.TS, 0).Add(maxClockSkew), now) {
		return nil, fmt.Errorf("hawk nonce %q was already used", a.Nonce)
	}
	return &authInfo{ClientID: a.ID, Scopes: q.expand(granted)}, nil
}

// expand is [expandScopes] with the queue's roles; without roles, scopes
// are left as they are.
func (q *Queue) expand(scopes []string) []string {
	if len(q.roles) == 0 {
		return scopes
	}
	return expandScopes(q.roles, scopes)
}

// lookupClient returns the accessToken and (expanded) scopes of a
// permanent client (the queue's own issuer included).
func (q *Queue) lookupClient(clientID string) (string, []string, bool) {
	if clientID == issuerClientID {
		return q.issuerToken, []string{"*"}, true
	}
	c, ok := q.clients[clientID]
	if !ok {
		return "", nil, false
	}
	return c.AccessToken, c.Scopes, true
}

// nonceCache remembers the Hawk nonces seen while their timestamps are
// still acceptable; older entries are swept out, so memory stays bounded by
// the request rate over the skew window.
type nonceCache struct {
	mu        sync.Mutex
	seen      map[string]time.Time // key → when it may be forgotten
	lastSweep time.Time
}

// use records key and reports whether it was new.
func (c *nonceCache) use(key string, forgetAt, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen = map[string]time.Time{}
	}
	if now.Sub(c.lastSweep) > time.Minute {
		for k, t := range c.seen {
			if now.After(t) {
				delete(c.seen, k)
			}
		}
		c.lastSweep = now
	}
	if _, dup := c.seen[key]; dup {
		return false
	}
	c.seen[key] = forgetAt
	return true
}
