// Package tcproxy is the HTTP proxy a task reaches Taskcluster through: it
// forwards each request to the deployment's root URL, signed with
// credentials it reads afresh for every request (so temporary credentials
// that change at each reclaim are picked up) and restricted to a fixed set
// of authorized scopes. It is the in-process counterpart of
// taskcluster-proxy, used by the taskclusterProxy feature; it knows nothing
// of Docker or tasks.
//
// Requests use either URL form of taskcluster-proxy,
// /<service>/<version>/<path> or /api/<service>/<version>/<path>; both go
// to <rootURL>/api/<service>/<version>/<path> with the query unchanged.
// Bodies stream both ways, redirects are answered to the client as the
// upstream answered them (never followed), and an Authorization header the
// client sent is replaced. A request from an address the proxy does not
// serve is refused with 403.
//
// Two paths are the proxy's own, as in taskcluster-proxy: POST /bewit
// signs the URL in the body (see [SignURL]) and answers 303 to the signed
// URL; /credentials, where taskcluster-proxy took new credentials, is
// refused (403 for PUT), since the credentials are read for every request.
package tcproxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"go.dockerworker.dev/docker-worker/worker/tc"
)

// Config configures a [Proxy].
type Config struct {
	// RootURL is the Taskcluster deployment's root URL.
	RootURL string
	// Credentials returns the credentials to sign the next request with;
	// it is called once per request and must be safe for concurrent use.
	Credentials func() Credentials
	// AuthorizedScopes restrict every request (Hawk ext authorizedScopes).
	// Nil leaves the credentials' scopes unrestricted.
	AuthorizedScopes []string
	// Allow reports whether a request from the client address may use the
	// proxy; nil allows every client.
	Allow func(netip.Addr) bool
	// Transport sends upstream requests (nil: http.DefaultTransport).
	Transport http.RoundTripper
	// Logger receives one line per refused or failed request.
	Logger *slog.Logger
	// Now is the clock requests are signed with (nil: time.Now).
	Now func() time.Time
}

// Credentials are Taskcluster credentials; temporary ones carry a
// certificate (the JSON string the queue returns).
type Credentials struct {
	ClientID    string
	AccessToken string
	Certificate string
}

// Proxy is an [http.Handler] forwarding to Taskcluster. Create it with
// [New]; it is safe for concurrent use.
type Proxy struct {
	cfg  Config
	root *url.URL
	rp   *httputil.ReverseProxy
}

// New returns a proxy for cfg.
func New(cfg Config) (*Proxy, error) {
	root, err := url.Parse(strings.TrimSuffix(cfg.RootURL, "/"))
	if err != nil || root.Scheme == "" || root.Host == "" {
		return nil, fmt.Errorf("tcproxy: root URL %q is not an absolute URL", cfg.RootURL)
	}
	if cfg.Credentials == nil {
		return nil, errors.New("tcproxy: no credentials")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p := &Proxy{cfg: cfg, root: root}
	p.rp = &httputil.ReverseProxy{
		Rewrite:       p.rewrite,
		Transport:     cfg.Transport,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p.cfg.Logger.Warn("taskcluster proxy request failed", "method", r.Method, "path", r.URL.Path, "error", err)
			http.Error(w, "taskcluster proxy: "+err.Error(), http.StatusBadGateway)
		},
	}
	return p, nil
}

// Target returns the upstream URL for a request path (escaped, as
// received) and raw query, or false when the path names no service.
func (p *Proxy) Target(escapedPath, rawQuery string) (*url.URL, bool) {
	rest, ok := strings.CutPrefix(escapedPath, "/")
	if !ok {
		return nil, false
	}
	rest = strings.TrimPrefix(rest, "api/")
	// rest is <service>/<version>[/...]; both parts must be non-empty.
	parts := strings.SplitN(rest, "/", 3)
	if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
		return nil, false
	}
	u, err := url.Parse(p.root.String() + "/api/" + rest)
	if err != nil {
		return nil, false
	}
	u.RawQuery = rawQuery
	return u, true
}

// ServeHTTP forwards one request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.cfg.Allow != nil {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil || !p.cfg.Allow(ap.Addr().Unmap()) {
			p.cfg.Logger.Warn("taskcluster proxy refused a client", "remote", r.RemoteAddr)
			http.Error(w, "taskcluster proxy: this proxy does not serve "+r.RemoteAddr, http.StatusForbidden)
			return
		}
	}
	switch r.URL.Path {
	case BewitPath:
		p.serveBewit(w, r)
		return
	case CredentialsPath:
		p.serveCredentials(w, r)
		return
	}
	if _, ok := p.Target(r.URL.EscapedPath(), r.URL.RawQuery); !ok {
		http.Error(w, "taskcluster proxy: want /<service>/<version>/... or /api/<service>/<version>/...", http.StatusNotFound)
		return
	}
	p.rp.ServeHTTP(w, r)
}

// rewrite points the outgoing request at the deployment and signs it.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	u, _ := p.Target(pr.In.URL.EscapedPath(), pr.In.URL.RawQuery) // checked in ServeHTTP
	pr.Out.URL = u
	pr.Out.Host = u.Host
	pr.Out.Header.Del("Authorization")
	c := p.cfg.Credentials()
	creds := tc.Credentials{ClientID: c.ClientID, AccessToken: c.AccessToken, Certificate: c.Certificate,
		AuthorizedScopes: p.cfg.AuthorizedScopes}
	auth, err := tc.SignRequest(creds, pr.Out.Method, u, p.cfg.Now())
	if err != nil {
		// Sent unsigned: the service answers as to an anonymous client.
		p.cfg.Logger.Error("taskcluster proxy cannot sign a request", "error", err)
		return
	}
	pr.Out.Header.Set("Authorization", auth)
}

// Serve serves the proxy on l until l is closed; it returns the server so
// the caller can shut it down.
func (p *Proxy) Serve(l net.Listener) *http.Server {
	srv := &http.Server{Handler: p, ReadHeaderTimeout: time.Minute}
	go srv.Serve(l)
	return srv
}
