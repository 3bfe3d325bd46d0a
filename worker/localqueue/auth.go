package localqueue

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"log/slog"
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

// indexClientID is the index service's own client, which signs the
// redirects of findArtifactFromTask to artifacts anonymous requests may
// not get; it may get every artifact, as on a real deployment.
const indexClientID = "static/taskcluster/index"

var indexClientScopes = []string{"queue:get-artifact:*"}

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
	// nonce is the request's Hawk nonce, reserved in memory until it is in
	// the store (nil for bewits and anonymous requests).
	nonce *pendingNonce
}

// authenticate verifies the request's Hawk Authorization header, or its
// bewit (a signed URL) when it has no header. It returns nil, nil when the
// request has neither.
func (q *Queue) authenticate(r *http.Request, body []byte, now time.Time) (*authInfo, error) {
	requestURI := r.RequestURI
	if requestURI == "" {
		requestURI = r.URL.RequestURI()
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return q.authenticateBewit(r, requestURI, now)
	}
	a, mac, err := hawkserver.ParseHeader(h)
	if err != nil {
		return nil, err
	}
	if skew := now.Sub(time.Unix(a.TS, 0)).Abs(); skew > maxClockSkew {
		return nil, fmt.Errorf("hawk timestamp %d is %s away from the server's clock (at most %s allowed)", a.TS, skew.Round(time.Second), maxClockSkew)
	}
	a.Method = r.Method
	a.Resource = requestURI
	a.Host, a.Port, err = hawkserver.SplitHostPort(r.Host, r.TLS != nil)
	if err != nil {
		return nil, fmt.Errorf("host header: %w", err)
	}
	ext, err := hawkserver.ParseExt(a.Ext)
	if err != nil {
		return nil, err
	}
	key, granted, err := q.credentials(a.ID, ext, now)
	if err != nil {
		return nil, err
	}
	if !hmac.Equal([]byte(a.MAC(key)), []byte(mac)) {
		return nil, fmt.Errorf("bad Hawk MAC for client %q", a.ID)
	}
	if a.Hash != "" && !hmac.Equal([]byte(hawkserver.PayloadHash(r.Header.Get("Content-Type"), body)), []byte(a.Hash)) {
		return nil, errors.New("hawk payload hash does not match the body")
	}
	if granted, err = q.restrict(granted, ext); err != nil {
		return nil, err
	}
	nonce, err := q.nonces.reserve(r.Context(), a.ID+"\x00"+a.Nonce+"\x00"+strconv.FormatInt(a.TS, 10), time.Unix(a.TS, 0).Add(maxClockSkew), now)
	if err != nil {
		return nil, err
	}
	if nonce == nil {
		return nil, fmt.Errorf("hawk nonce %q was already used", a.Nonce)
	}
	return &authInfo{ClientID: a.ID, Scopes: q.expand(granted), nonce: nonce}, nil
}

// authenticateBewit verifies the bewit of a GET or HEAD request; nil, nil
// when it has none.
func (q *Queue) authenticateBewit(r *http.Request, requestURI string, now time.Time) (*authInfo, error) {
	b, ok, err := hawkserver.ParseBewit(requestURI)
	if !ok || err != nil {
		return nil, err
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return nil, fmt.Errorf("a bewit is only good for GET and HEAD, not %s", r.Method)
	}
	if !now.Before(b.Expiry) {
		return nil, fmt.Errorf("bewit of client %q expired at %s", b.ID, formatTime(b.Expiry))
	}
	host, port, err := hawkserver.SplitHostPort(r.Host, r.TLS != nil)
	if err != nil {
		return nil, fmt.Errorf("host header: %w", err)
	}
	ext, err := hawkserver.ParseExt(b.Ext)
	if err != nil {
		return nil, err
	}
	key, granted, err := q.credentials(b.ID, ext, now)
	if err != nil {
		return nil, err
	}
	if !b.Valid(key, http.MethodGet, host, port) {
		return nil, fmt.Errorf("bad bewit MAC for client %q", b.ID)
	}
	if granted, err = q.restrict(granted, ext); err != nil {
		return nil, err
	}
	return &authInfo{ClientID: b.ID, Scopes: q.expand(granted)}, nil
}

// credentials returns the key a request of clientID is signed with and the
// scopes it is granted before authorizedScopes: a permanent client's, or
// those of the certificate of temporary credentials (which the issuer's
// scopes must satisfy).
func (q *Queue) credentials(clientID string, ext hawkserver.Ext, now time.Time) (string, []string, error) {
	if ext.Certificate == nil {
		clientKey, clientScopes, ok := q.lookupClient(clientID)
		if !ok || clientID == issuerClientID {
			return "", nil, fmt.Errorf("unknown clientId %q", clientID)
		}
		return clientKey, clientScopes, nil
	}
	issuer, err := hawkserver.CertificateIssuer(ext.Certificate)
	if err != nil {
		return "", nil, err
	}
	named := issuer != ""
	if !named { // unnamed temporary credentials: the issuer signs in its own name
		issuer = clientID
	} else if issuer == clientID {
		return "", nil, errors.New("ext.certificate.issuer must differ from the supplied clientId")
	}
	issuerKey, issuerScopes, ok := q.lookupClient(issuer)
	if !ok {
		return "", nil, fmt.Errorf("ext.certificate issuer %q is not a known client", issuer)
	}
	// Naming temporary credentials is creating a client of that name, for
	// their lifetime: the issuer must be allowed to, as the auth service
	// requires (its message, word for word).
	if createScope := "auth:create-client:" + clientID; named && !scopes.Satisfied(issuerScopes, createScope) {
		return "", nil, fmt.Errorf("ext.certificate issuer `%s` doesn't have `%s` for supplied clientId.", issuer, createScope)
	}
	cert, derived, err := hawkserver.VerifyCertificate(ext.Certificate, clientID, issuerKey, now)
	if err != nil {
		return "", nil, fmt.Errorf("client %q: %w", clientID, err)
	}
	if !scopes.AllSatisfied(issuerScopes, cert.Scopes) {
		return "", nil, fmt.Errorf("ext.certificate issuer %q does not have sufficient scopes for the certificate's scopes", issuer)
	}
	return derived, cert.Scopes, nil
}

// restrict applies ext's authorizedScopes, which the (expanded) granted
// scopes must satisfy.
func (q *Queue) restrict(granted []string, ext hawkserver.Ext) ([]string, error) {
	if !ext.HasAuthorized {
		return granted, nil
	}
	if !scopes.AllSatisfied(q.expand(granted), ext.AuthorizedScopes) {
		return nil, errors.New("ext.authorizedScopes oversteps your scopes")
	}
	return ext.AuthorizedScopes, nil
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
// permanent client (the queue's own issuer and index client included).
func (q *Queue) lookupClient(clientID string) (string, []string, bool) {
	switch clientID {
	case issuerClientID:
		return q.issuerToken, []string{"*"}, true
	case indexClientID:
		return q.indexToken, indexClientScopes, true
	}
	c, ok := q.clients[clientID]
	if !ok {
		return "", nil, false
	}
	return c.AccessToken, c.Scopes, true
}

// maxNonces bounds the Hawk nonces remembered at once: requests beyond
// it within one clock-skew window are refused rather than let a nonce be
// forgotten early (which would let its request be replayed).
const maxNonces = 250_000

// errTooManyNonces refuses a request when maxNonces are remembered.
var errTooManyNonces = fmt.Errorf("too many signed requests within %s: the queue cannot remember another Hawk nonce; retry later", maxClockSkew)

// nonceCache remembers the Hawk nonces seen while their timestamps are
// still acceptable, in memory and in the queue's Store, so that a request
// cannot be replayed within the clock-skew window, not even after a
// restart on the same (durable) store. Entries past the window are swept
// out of both; at most maxNonces are kept.
//
// A request's nonce is reserved in memory when it is authenticated and
// reaches the store no later than the request's effects or its answer:
// with the first change the request commits (one transaction, one fsync),
// else just before the answer is written ([pendingNonce.store]). A request
// that was neither answered nor took effect before a crash may be sent
// again, which does what it would have done.
type nonceCache struct {
	store Store
	log   *slog.Logger

	mu        sync.Mutex
	seen      map[string]time.Time // key → when it may be forgotten
	lastSweep time.Time
}

// load fills the cache with the nonces the store remembers at now.
func (c *nonceCache) load(ctx context.Context, store Store, log *slog.Logger, now time.Time) error {
	seen, err := store.Nonces(ctx, now)
	if err != nil {
		return fmt.Errorf("load Hawk nonces: %w", err)
	}
	c.store, c.log, c.seen, c.lastSweep = store, log, seen, now
	return nil
}

// reserve records key until forgetAt in memory and returns it, to be
// stored, or nil when the key was seen before.
func (c *nonceCache) reserve(ctx context.Context, key string, forgetAt, now time.Time) (*pendingNonce, error) {
	c.mu.Lock()
	if c.seen == nil {
		c.seen = map[string]time.Time{}
	}
	var expired []string
	if now.Sub(c.lastSweep) > time.Minute {
		for k, t := range c.seen {
			if !t.After(now) {
				expired = append(expired, k)
				delete(c.seen, k)
			}
		}
		c.lastSweep = now
	}
	_, dup := c.seen[key]
	full := !dup && len(c.seen) >= maxNonces
	if !dup && !full {
		c.seen[key] = forgetAt // a concurrent replay is refused from here on
	}
	c.mu.Unlock()
	if len(expired) > 0 && c.store != nil {
		if err := c.store.ForgetNonces(ctx, expired); err != nil {
			c.log.Warn("cannot drop expired Hawk nonces (dropped at the next start)", "err", err)
		}
	}
	switch {
	case dup:
		return nil, nil
	case full:
		return nil, errTooManyNonces
	}
	return &pendingNonce{cache: c, key: key, forgetAt: forgetAt}, nil
}

// pendingNonce is a request's nonce from its authentication until it is in
// the store.
type pendingNonce struct {
	cache    *nonceCache
	key      string
	forgetAt time.Time

	mu     sync.Mutex
	stored bool
}

// withCommit runs commit, which stores the change it is given with the
// nonce added when the nonce is not stored yet.
func (n *pendingNonce) withCommit(commit func(*NonceRecord) error) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stored {
		return commit(nil)
	}
	if err := commit(&NonceRecord{Key: n.key, ForgetAt: n.forgetAt}); err != nil {
		return err
	}
	n.stored = true
	return nil
}

// store writes the nonce to the store unless a commit carried it already.
func (n *pendingNonce) store(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stored || n.cache.store == nil {
		return nil
	}
	// An answer the router holds until it is durable: the nonce needs only
	// to join the next group of changes.
	if g, ok := n.cache.store.(*groupStore); ok && durabilityDeferred(ctx) {
		if _, err := g.apply(Change{Nonces: []NonceRecord{{Key: n.key, ForgetAt: n.forgetAt}}}); err != nil {
			return fmt.Errorf("cannot record the Hawk nonce: %w", err)
		}
		n.stored = true
		return nil
	}
	if err := n.cache.store.RememberNonce(ctx, n.key, n.forgetAt); err != nil {
		return fmt.Errorf("cannot record the Hawk nonce: %w", err)
	}
	n.stored = true
	return nil
}

// pendingNonceKey is the context key of a request's *pendingNonce.
type pendingNonceKey struct{}

func pendingNonceOf(ctx context.Context) *pendingNonce {
	n, _ := ctx.Value(pendingNonceKey{}).(*pendingNonce)
	return n
}

// nonceWriter stores the request's nonce before the first byte of the
// answer is written.
type nonceWriter struct {
	http.ResponseWriter
	ctx   context.Context
	nonce *pendingNonce
	log   *slog.Logger
	done  bool
}

func (w *nonceWriter) flushNonce() {
	if w.done {
		return
	}
	w.done = true
	if err := w.nonce.store(context.WithoutCancel(w.ctx)); err != nil {
		w.log.Error("the request's Hawk nonce is not stored: after a restart the request could be replayed", "err", err)
	}
}

func (w *nonceWriter) WriteHeader(code int) {
	w.flushNonce()
	w.ResponseWriter.WriteHeader(code)
}

func (w *nonceWriter) Write(b []byte) (int, error) {
	w.flushNonce()
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *nonceWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush implements http.Flusher when the underlying writer does.
func (w *nonceWriter) Flush() {
	w.flushNonce()
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
