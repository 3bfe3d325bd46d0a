package tc

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Credentials are what a Taskcluster client signs requests with: a permanent
// client (ClientID + AccessToken) or temporary credentials (plus Certificate,
// the certificate as the JSON string the queue returns). AuthorizedScopes,
// when non-nil, narrows what the request may do.
type Credentials struct {
	ClientID         string   `json:"clientId"`
	AccessToken      string   `json:"accessToken"`
	Certificate      string   `json:"certificate,omitempty"`
	AuthorizedScopes []string `json:"-"`
}

// HawkArtifacts are the parts of a request that a Hawk MAC covers.
type HawkArtifacts struct {
	ID       string
	TS       int64
	Nonce    string
	Method   string
	Resource string // path?query, exactly as sent
	Host     string
	Port     int
	Hash     string
	Ext      string
}

// normalized is the Hawk 1 header string the MAC is computed over.
func (a HawkArtifacts) normalized() string {
	var b strings.Builder
	for _, s := range []string{
		"hawk.1.header",
		strconv.FormatInt(a.TS, 10),
		a.Nonce,
		strings.ToUpper(a.Method),
		a.Resource,
		strings.ToLower(a.Host),
		strconv.Itoa(a.Port),
		a.Hash,
		a.Ext,
	} {
		b.WriteString(s)
		b.WriteByte('\n')
	}
	return b.String()
}

// MAC computes the base64 HMAC-SHA256 of the request artifacts with key.
func (a HawkArtifacts) MAC(key string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(a.normalized()))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Header renders the Authorization header value for the artifacts, signed with key.
func (a HawkArtifacts) Header(key string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `Hawk id="%s", ts="%d", nonce="%s"`, a.ID, a.TS, a.Nonce)
	if a.Hash != "" {
		fmt.Fprintf(&b, `, hash="%s"`, a.Hash)
	}
	if a.Ext != "" {
		fmt.Fprintf(&b, `, ext="%s"`, a.Ext)
	}
	fmt.Fprintf(&b, `, mac="%s"`, a.MAC(key))
	return b.String()
}

// HawkExt builds the Taskcluster ext value: base64 of a JSON object holding the
// certificate (as an object) and authorizedScopes. It is empty when neither is set.
func HawkExt(certificate string, authorizedScopes []string) (string, error) {
	if certificate == "" && authorizedScopes == nil {
		return "", nil
	}
	ext := map[string]any{}
	if certificate != "" {
		if !json.Valid([]byte(certificate)) {
			return "", errors.New("hawk: certificate is not valid JSON")
		}
		ext["certificate"] = json.RawMessage(certificate)
	}
	if authorizedScopes != nil {
		ext["authorizedScopes"] = authorizedScopes
	}
	b, err := json.Marshal(ext)
	if err != nil {
		return "", fmt.Errorf("hawk: encode ext: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// SignRequest returns the Authorization header for a request of method to u,
// signed with creds at time now.
func SignRequest(creds Credentials, method string, u *url.URL, now time.Time) (string, error) {
	ext, err := HawkExt(creds.Certificate, creds.AuthorizedScopes)
	if err != nil {
		return "", err
	}
	host, port, err := hostPort(u)
	if err != nil {
		return "", err
	}
	a := HawkArtifacts{
		ID:       creds.ClientID,
		TS:       now.Unix(),
		Nonce:    newNonce(),
		Method:   method,
		Resource: u.RequestURI(),
		Host:     host,
		Port:     port,
		Ext:      ext,
	}
	return a.Header(creds.AccessToken), nil
}

func hostPort(u *url.URL) (string, int, error) {
	host := u.Hostname()
	p := u.Port()
	if p == "" {
		switch u.Scheme {
		case "https":
			return host, 443, nil
		case "http":
			return host, 80, nil
		}
		return "", 0, fmt.Errorf("hawk: no port for scheme %q", u.Scheme)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("hawk: bad port %q: %w", p, err)
	}
	return host, port, nil
}

// SplitHostPort splits a Host header value into host and port, defaulting the
// port from the scheme.
func SplitHostPort(hostHeader string, tls bool) (string, int, error) {
	host, p, err := net.SplitHostPort(hostHeader)
	if err != nil {
		host = hostHeader
		if tls {
			return host, 443, nil
		}
		return host, 80, nil
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("bad port %q: %w", p, err)
	}
	return host, port, nil
}

func newNonce() string {
	var b [9]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("hawk: crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ParseHawkHeader parses an `Authorization: Hawk ...` value into its attributes.
// Method, Resource, Host and Port are left for the caller to fill from the request.
func ParseHawkHeader(h string) (HawkArtifacts, string, error) {
	var a HawkArtifacts
	rest, ok := strings.CutPrefix(h, "Hawk ")
	if !ok {
		return a, "", errors.New("not a Hawk authorization header")
	}
	attrs := map[string]string{}
	for rest = strings.TrimSpace(rest); rest != ""; {
		eq := strings.IndexByte(rest, '=')
		if eq < 0 || eq+1 >= len(rest) || rest[eq+1] != '"' {
			return a, "", errors.New("malformed Hawk header")
		}
		name := strings.TrimSpace(rest[:eq])
		end := strings.IndexByte(rest[eq+2:], '"')
		if end < 0 {
			return a, "", errors.New("malformed Hawk header: unterminated value")
		}
		if _, dup := attrs[name]; dup {
			return a, "", fmt.Errorf("duplicate Hawk attribute %q", name)
		}
		attrs[name] = rest[eq+2 : eq+2+end]
		rest = strings.TrimSpace(rest[eq+2+end+1:])
		rest = strings.TrimSpace(strings.TrimPrefix(rest, ","))
	}
	for _, req := range []string{"id", "ts", "nonce", "mac"} {
		if attrs[req] == "" {
			return a, "", fmt.Errorf("Hawk header is missing %q", req)
		}
	}
	ts, err := strconv.ParseInt(attrs["ts"], 10, 64)
	if err != nil {
		return a, "", fmt.Errorf("bad Hawk timestamp: %w", err)
	}
	a.ID, a.TS, a.Nonce, a.Hash, a.Ext = attrs["id"], ts, attrs["nonce"], attrs["hash"], attrs["ext"]
	return a, attrs["mac"], nil
}

// Ext is the decoded Taskcluster Hawk ext.
type Ext struct {
	Certificate      json.RawMessage `json:"certificate,omitempty"`
	AuthorizedScopes []string        `json:"authorizedScopes,omitempty"`
	HasAuthorized    bool            `json:"-"`
}

// ParseExt decodes a Taskcluster ext value (base64 JSON); empty yields a zero Ext.
func ParseExt(ext string) (Ext, error) {
	var e Ext
	if ext == "" {
		return e, nil
	}
	raw, err := base64.StdEncoding.DecodeString(ext)
	if err != nil {
		return e, fmt.Errorf("ext is not base64: %w", err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return e, fmt.Errorf("ext is not a JSON object: %w", err)
	}
	if c, ok := m["certificate"]; ok {
		e.Certificate = c
	}
	if s, ok := m["authorizedScopes"]; ok {
		if err := json.Unmarshal(s, &e.AuthorizedScopes); err != nil {
			return e, fmt.Errorf("ext authorizedScopes: %w", err)
		}
		e.HasAuthorized = true
	}
	return e, nil
}
