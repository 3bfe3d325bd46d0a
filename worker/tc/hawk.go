package tc

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
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

// HawkArtifacts are the parts of a request that a Hawk MAC covers. A client
// fills them from the request it sends (SignRequest); a server fills them
// from the request it received and recomputes the MAC to verify it.
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
	// The certificate goes out as given: no HTML escaping of its
	// characters (json.Marshal would rewrite "&" as "\u0026").
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ext); err != nil {
		return "", fmt.Errorf("hawk: encode ext: %w", err)
	}
	return base64.StdEncoding.EncodeToString(bytes.TrimSuffix(b.Bytes(), []byte("\n"))), nil
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

func newNonce() string {
	var b [9]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("hawk: crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}
