package hawkserver

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net"
	"strconv"
	"strings"

	"go.dockerworker.dev/docker-worker/worker/tc"
)

// ParseHeader parses an `Authorization: Hawk ...` value into its attributes
// and returns them with the MAC the client sent. Method, Resource, Host and
// Port are left for the caller to fill from the request before recomputing
// the MAC.
func ParseHeader(h string) (tc.HawkArtifacts, string, error) {
	var a tc.HawkArtifacts
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

// SplitHostPort splits a Host header value into host and port, defaulting
// the port from the scheme (443 with TLS, else 80) when there is none or it
// is empty ("host:"). An IPv6 literal loses its brackets with or without a
// port, as clients sign it (net/url's Hostname).
func SplitHostPort(hostHeader string, tls bool) (string, int, error) {
	def := 80
	if tls {
		def = 443
	}
	host, p, err := net.SplitHostPort(hostHeader)
	if err != nil {
		host = hostHeader
		if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
			host = host[1 : len(host)-1]
		}
		return host, def, nil
	}
	if p == "" {
		return host, def, nil
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("bad port %q: %w", p, err)
	}
	return host, port, nil
}

// Ext is the decoded Taskcluster Hawk ext.
type Ext struct {
	// Certificate is the certificate of temporary credentials, as sent (a
	// JSON object, or a JSON string holding one); nil when absent.
	Certificate json.RawMessage `json:"certificate,omitempty"`
	// AuthorizedScopes narrows the request's scopes when HasAuthorized.
	AuthorizedScopes []string `json:"authorizedScopes,omitempty"`
	HasAuthorized    bool     `json:"-"`
}

// ParseExt decodes a Taskcluster ext value (base64 JSON); empty yields a
// zero Ext.
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

// PayloadHash is the Hawk payload hash of body sent with contentType
// (parameters such as charset do not count).
func PayloadHash(contentType string, body []byte) string {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		mt = strings.ToLower(strings.TrimSpace(strings.Split(contentType, ";")[0]))
	}
	h := sha256.New()
	h.Write([]byte("hawk.1.payload\n" + mt + "\n"))
	h.Write(body)
	h.Write([]byte("\n"))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}
