package tc

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzHawkExt: the ext is refused exactly when the certificate is not
// JSON, is empty when there is nothing to send, and otherwise decodes
// (base64, then JSON) to the certificate and the authorized scopes given.
func FuzzHawkExt(f *testing.F) {
	cert := `{"version":1,"scopes":["*"],"start":1,"expiry":2,"seed":"` + strings.Repeat("s", 44) + `","signature":"x"}`
	f.Add("", "", false)
	f.Add(cert, "", false)
	f.Add(cert, "queue:get-artifact:private/*\na", true)
	f.Add("", "", true)
	f.Add("{", "a", true)
	f.Add(`"a string"`, "", false)
	f.Add(" {\"a\" : [1, 2] } ", "", false)
	f.Add("null", "", true)
	f.Fuzz(func(t *testing.T, certificate, scopeText string, hasScopes bool) {
		var scopes []string
		if hasScopes {
			scopes = []string{}
			if scopeText != "" {
				scopes = strings.Split(scopeText, "\n")
			}
		}
		ext, err := HawkExt(certificate, scopes)
		if certificate != "" && !json.Valid([]byte(certificate)) {
			if err == nil {
				t.Fatalf("HawkExt(%q) accepted a certificate that is not JSON: %q", certificate, ext)
			}
			return
		}
		if err != nil {
			t.Fatalf("HawkExt(%q, %q): %v", certificate, scopes, err)
		}
		if certificate == "" && !hasScopes {
			if ext != "" {
				t.Fatalf("ext %q for no certificate and no scopes", ext)
			}
			return
		}
		raw, err := base64.StdEncoding.DecodeString(ext)
		if err != nil {
			t.Fatalf("ext %q is not base64: %v", ext, err)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("ext %q is not a JSON object: %v", raw, err)
		}
		c, hasCert := m["certificate"]
		if hasCert != (certificate != "") || (hasCert && !sameJSON(c, []byte(certificate))) {
			t.Fatalf("ext %s carries certificate %s, want %q", raw, c, certificate)
		}
		s, hasS := m["authorizedScopes"]
		if hasS != hasScopes {
			t.Fatalf("ext %s: authorizedScopes present %v, want %v", raw, hasS, hasScopes)
		}
		if hasS && utf8.ValidString(scopeText) {
			var got []string
			if err := json.Unmarshal(s, &got); err != nil || got == nil || !slices.Equal(got, scopes) {
				t.Fatalf("ext %s carries scopes %s (%v), want %q", raw, s, err, scopes)
			}
		}
		if len(m) != btoi(hasCert)+btoi(hasS) {
			t.Fatalf("ext %s has other members", raw)
		}
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// sameJSON reports whether a and b hold the same JSON text up to white
// space outside strings.
func sameJSON(a, b []byte) bool {
	var x, y bytes.Buffer
	return json.Compact(&x, a) == nil && json.Compact(&y, b) == nil && bytes.Equal(x.Bytes(), y.Bytes())
}

// signedHeader matches the header SignRequest writes.
var signedHeader = regexp.MustCompile(`^Hawk id="([^"]*)", ts="(-?[0-9]+)", nonce="([A-Za-z0-9_-]+)"(?:, ext="([A-Za-z0-9+/=]+)")?, mac="([A-Za-z0-9+/=]+)"$`)

// clientIDPattern is the form Taskcluster gives client IDs.
var clientIDPattern = regexp.MustCompile(`^[A-Za-z0-9!@/:.+|_-]+$`)

// FuzzSignRequest: signing any request either fails on a URL without a
// usable port or yields a header of the documented form whose MAC is the
// one a server recomputes from the request it receives.
func FuzzSignRequest(f *testing.F) {
	f.Add("GET", "https://tc.example.com/api/queue/v1/task/abc/status", "me", "secret", "", int64(1700000000))
	f.Add("post", "http://127.0.0.1:8080/api/queue/v1/task/a%2Fb?x=1&y=%20", "task-client/a/0/on/g/w/until/1", "t", `{"version":1}`, int64(0))
	f.Add("PUT", "ftp://host/x", "c", "t", "", int64(-1))
	f.Add("GET", "http://[::1]:99999999999/", "c", "t", "", int64(1))
	f.Add("GET", "http://h:/", "c", "t", "", int64(1))
	f.Add("GET", "HTTP://Example.COM:80", "c", "t", "", int64(1))
	f.Fuzz(func(t *testing.T, method, rawURL, clientID, token, certificate string, ts int64) {
		u, err := url.Parse(rawURL)
		if err != nil {
			return
		}
		creds := Credentials{ClientID: clientID, AccessToken: token, Certificate: certificate}
		h, err := SignRequest(creds, method, u, time.Unix(ts, 0))
		if err != nil {
			return
		}
		if !clientIDPattern.MatchString(clientID) {
			return // the header quotes IDs as they are; Taskcluster's IDs need no escaping
		}
		m := signedHeader.FindStringSubmatch(h)
		if m == nil {
			t.Fatalf("SignRequest wrote %q", h)
		}
		if m[1] != clientID || m[2] != strconv.FormatInt(ts, 10) || (m[4] != "") != (certificate != "") {
			t.Fatalf("header %q for client %q at %d with certificate %q", h, clientID, ts, certificate)
		}
		host, port := u.Hostname(), 0
		switch {
		case u.Port() != "":
			port, err = strconv.Atoi(u.Port())
			if err != nil {
				t.Fatalf("signed %q although its port %q is not a number", rawURL, u.Port())
			}
		case u.Scheme == "https":
			port = 443
		case u.Scheme == "http":
			port = 80
		default:
			t.Fatalf("signed %q although scheme %q has no default port", rawURL, u.Scheme)
		}
		a := HawkArtifacts{ID: clientID, TS: ts, Nonce: m[3], Method: method, Resource: u.RequestURI(), Host: host, Port: port, Ext: m[4]}
		if a.MAC(token) != m[5] {
			t.Fatalf("header %q: the MAC is not the one recomputed from %+v", h, a)
		}
	})
}
