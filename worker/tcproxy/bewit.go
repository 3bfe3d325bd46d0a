package tcproxy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.dockerworker.dev/docker-worker/worker/tc"
)

// BewitLifetime is how long a URL signed by the /bewit endpoint is good
// for, as with taskcluster-proxy. The credentials' certificate is checked
// too when the URL is used: temporary credentials make it last no longer
// than they do.
const BewitLifetime = time.Hour

// maxBewitBody bounds the body of a /bewit request (one URL).
const maxBewitBody = 64 << 10

// Paths of the proxy's own endpoints.
const (
	BewitPath       = "/bewit"
	CredentialsPath = "/credentials"
)

// SignURL returns rawURL (an absolute http or https URL without fragment)
// with a Hawk bewit appended to its query: the URL can then be fetched
// (GET or HEAD) with the authority of creds until expiry, without any
// header. Taskcluster's ext (the certificate of temporary credentials and
// the authorized scopes) travels in the bewit. The path and query are
// signed exactly as written in rawURL.
func SignURL(creds tc.Credentials, rawURL string, expiry time.Time) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("sign URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return "", fmt.Errorf("sign URL %q: not an absolute http or https URL", rawURL)
	}
	if u.Fragment != "" || strings.Contains(rawURL, "#") {
		return "", fmt.Errorf("sign URL %q: a URL with a fragment cannot be signed", rawURL)
	}
	if creds.ClientID == "" || creds.AccessToken == "" {
		return "", errors.New("sign URL: no credentials")
	}
	ext, err := tc.HawkExt(creds.Certificate, creds.AuthorizedScopes)
	if err != nil {
		return "", fmt.Errorf("sign URL: %w", err)
	}
	// The resource is the request URI as a client sends it: what follows
	// the authority in rawURL ("/" when there is no path).
	after := strings.Index(rawURL, "://") + 3
	if !strings.HasPrefix(rawURL[after:], u.Host) {
		return "", fmt.Errorf("sign URL %q: unusual host notation", rawURL)
	}
	origin, resource := rawURL[:after+len(u.Host)], rawURL[after+len(u.Host):]
	if resource == "" || resource[0] == '?' {
		resource = "/" + resource
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	exp := strconv.FormatInt(expiry.Unix(), 10)
	m := hmac.New(sha256.New, []byte(creds.AccessToken))
	for _, s := range []string{"hawk.1.bewit", exp, "", "GET", resource, strings.ToLower(u.Hostname()), port, "", ext} {
		m.Write([]byte(s))
		m.Write([]byte{'\n'})
	}
	mac := base64.StdEncoding.EncodeToString(m.Sum(nil))
	bewit := base64.RawURLEncoding.EncodeToString([]byte(creds.ClientID + `\` + exp + `\` + mac + `\` + ext))
	sep := "?"
	if strings.Contains(resource, "?") {
		sep = "&"
	}
	return origin + resource + sep + "bewit=" + bewit, nil
}

// serveBewit answers POST /bewit: the body is a URL, the answer a 303 to
// that URL signed (see [SignURL]) with the current credentials and the
// authorized scopes, the signed URL also being the body.
func (p *Proxy) serveBewit(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "taskcluster proxy: POST the URL to sign to "+BewitPath, http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBewitBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, "taskcluster proxy: the URL to sign is too long", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "taskcluster proxy: read the URL to sign: "+err.Error(), http.StatusBadRequest)
		return
	}
	c := p.cfg.Credentials()
	creds := tc.Credentials{ClientID: c.ClientID, AccessToken: c.AccessToken, Certificate: c.Certificate,
		AuthorizedScopes: p.cfg.AuthorizedScopes}
	signed, err := SignURL(creds, strings.TrimSpace(string(body)), p.cfg.Now().Add(BewitLifetime))
	if err != nil {
		http.Error(w, "taskcluster proxy: "+err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Location", signed)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusSeeOther)
	io.WriteString(w, signed)
}

// serveCredentials answers /credentials. taskcluster-proxy took new
// credentials there (PUT) from the worker at each reclaim; this proxy reads
// the run's current credentials for every request instead, so it refuses
// credentials sent to it rather than pretend to use them.
func (p *Proxy) serveCredentials(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut {
		w.Header().Set("Allow", http.MethodPut)
		http.Error(w, "taskcluster proxy: "+CredentialsPath+" only takes PUT", http.StatusMethodNotAllowed)
		return
	}
	p.cfg.Logger.Warn("taskcluster proxy refused credentials sent to it", "remote", r.RemoteAddr)
	http.Error(w, "taskcluster proxy: credentials cannot be replaced; the worker signs every request with the run's current credentials", http.StatusForbidden)
}
