package hawkserver

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.dockerworker.dev/docker-worker/worker/tc"
)

// clientIDPattern is the form Taskcluster gives client IDs; the round-trip
// properties hold for the IDs a client can have.
var clientIDPattern = regexp.MustCompile(`^[A-Za-z0-9!@/:.+|_-]+$`)

// render writes a Hawk header from attributes in the given order, as any
// client could.
func render(names, values []string) string {
	parts := make([]string, len(names))
	for i := range names {
		parts[i] = fmt.Sprintf(`%s="%s"`, names[i], values[i])
	}
	return "Hawk " + strings.Join(parts, ", ")
}

// FuzzParseHeader: any Authorization value is parsed or refused without a
// panic; a header that parses has the required attributes, and rendering
// what was parsed and parsing it again gives the same result.
func FuzzParseHeader(f *testing.F) {
	for _, seed := range []string{
		`Hawk id="me", ts="1700000000", nonce="abc", mac="bWFj"`,
		`Hawk id="me", ts="1700000000", nonce="abc", hash="aGFzaA==", ext="e30=", mac="bWFj"`,
		`Hawk id="me",ts="1",nonce="n",mac="m"`,
		`Hawk  id = "me" , ts="-5", nonce="n", mac="m",`,
		`Hawk id="me", id="you", ts="1", nonce="n", mac="m"`,
		`Hawk id="me", ts="1", nonce="n"`,
		`Hawk id="me", ts="x", nonce="n", mac="m"`,
		`Hawk id="me", ts="1", nonce="n", mac="m`,
		`Hawk id=me, ts="1", nonce="n", mac="m"`,
		`Hawk id=`,
		`Hawk =""`,
		`Hawk `,
		`Bearer abc`,
		``,
		`Hawk id="a\"b", ts="1", nonce="n", mac="m"`,
		`Hawk id="me", ts="99999999999999999999", nonce="n", mac="m"`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, h string) {
		a, mac, err := ParseHeader(h)
		if err != nil {
			if a != (tc.HawkArtifacts{}) || mac != "" {
				t.Fatalf("ParseHeader(%q) failed (%v) but returned %+v, %q", h, err, a, mac)
			}
			return
		}
		if !strings.HasPrefix(h, "Hawk ") || a.ID == "" || a.Nonce == "" || mac == "" {
			t.Fatalf("ParseHeader(%q) accepted %+v, mac %q", h, a, mac)
		}
		names := []string{"id", "ts", "nonce", "mac"}
		values := []string{a.ID, fmt.Sprint(a.TS), a.Nonce, mac}
		if a.Hash != "" {
			names, values = append(names, "hash"), append(values, a.Hash)
		}
		if a.Ext != "" {
			names, values = append(names, "ext"), append(values, a.Ext)
		}
		again, mac2, err := ParseHeader(render(names, values))
		if err != nil || again != a || mac2 != mac {
			t.Fatalf("%q parsed as %+v (mac %q); rendered again it parses as %+v (mac %q), %v", h, a, mac, again, mac2, err)
		}
	})
}

// FuzzSignedHeaderRoundTrip: a header a client signs parses back into the
// attributes it was made from, and the MAC verifies with the same key only.
func FuzzSignedHeaderRoundTrip(f *testing.F) {
	f.Add("me", int64(1700000000), "nonce", "/api/queue/v1/task/x/status?a=1", "127.0.0.1", 8080, "", "e30=", "secret")
	f.Add("task-client/abc/0/on/g/w/until/123", int64(0), "n", "/", "Example.COM", 443, "aGFzaA==", "", "k")
	f.Add("a", int64(-1), "x y", "/%2F", "h", 0, "", "", "")
	f.Fuzz(func(t *testing.T, id string, ts int64, nonce, resource, host string, port int, hash, ext, key string) {
		if !clientIDPattern.MatchString(id) || nonce == "" || strings.ContainsRune(nonce+hash+ext, '"') {
			return // not what a client sends: IDs are restricted, and nonce, hash and ext are base64
		}
		a := tc.HawkArtifacts{ID: id, TS: ts, Nonce: nonce, Method: "GET", Resource: resource, Host: host, Port: port, Hash: hash, Ext: ext}
		h := a.Header(key)
		got, mac, err := ParseHeader(h)
		if err != nil {
			t.Fatalf("ParseHeader(%q): %v", h, err)
		}
		got.Method, got.Resource, got.Host, got.Port = a.Method, a.Resource, a.Host, a.Port
		if got != a {
			t.Fatalf("header %q parsed as %+v, want %+v", h, got, a)
		}
		if got.MAC(key) != mac {
			t.Fatalf("MAC of %q does not verify with its key", h)
		}
		if got.MAC(key+"x") == mac {
			t.Fatalf("MAC of %q verifies with another key", h)
		}
	})
}

// FuzzParseExt: any ext is decoded or refused without a panic; a decoded
// one encodes again (as the client encodes it) to an ext that decodes to
// the same certificate and scopes.
func FuzzParseExt(f *testing.F) {
	enc := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, seed := range []string{
		"",
		enc(`{}`),
		enc(`{"authorizedScopes": ["queue:get-artifact:private/*", "a"]}`),
		enc(`{"authorizedScopes": []}`),
		enc(`{"authorizedScopes": null}`),
		enc(`{"certificate": {"version": 1, "scopes": ["*"], "start": 1, "expiry": 2, "seed": "s", "signature": "x"}}`),
		enc(`{"certificate": "{\"version\":1}"}`),
		enc(`{"certificate": null, "authorizedScopes": "a"}`),
		enc(`[]`),
		enc(`"x"`),
		enc(`{"authorizedScopes": [1]}`),
		"not base64!",
		"e30",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, ext string) {
		e, err := ParseExt(ext)
		if err != nil {
			return
		}
		if ext == "" && (e.Certificate != nil || e.HasAuthorized) {
			t.Fatalf("empty ext decoded as %+v", e)
		}
		if !e.HasAuthorized && e.AuthorizedScopes != nil {
			t.Fatalf("ext %q: scopes %q without HasAuthorized", ext, e.AuthorizedScopes)
		}
		if e.Certificate != nil && !json.Valid(e.Certificate) {
			t.Fatalf("ext %q: certificate %q is not JSON", ext, e.Certificate)
		}
		if slices.ContainsFunc(e.AuthorizedScopes, func(s string) bool { return !utf8.ValidString(s) }) {
			return // JSON cannot carry it back unchanged
		}
		var scopes []string
		if e.HasAuthorized {
			scopes = e.AuthorizedScopes
			if scopes == nil {
				scopes = []string{}
			}
		}
		again, err := tc.HawkExt(string(e.Certificate), scopes)
		if err != nil {
			t.Fatalf("ext %q decoded as %+v, which the client cannot encode: %v", ext, e, err)
		}
		e2, err := ParseExt(again)
		if err != nil {
			t.Fatalf("ext %q re-encoded as %q, which does not decode: %v", ext, again, err)
		}
		if e2.HasAuthorized != e.HasAuthorized || !slices.Equal(e2.AuthorizedScopes, e.AuthorizedScopes) ||
			!jsonEqual(e2.Certificate, e.Certificate) {
			t.Fatalf("ext %q decoded as %+v; re-encoded it decodes as %+v", ext, e, e2)
		}
	})
}

// jsonEqual reports whether a and b are the same JSON value (both nil
// counts as equal).
func jsonEqual(a, b json.RawMessage) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return fmt.Sprint(x) == fmt.Sprint(y)
}

// FuzzVerifyCertificate: any certificate is verified or refused without a
// panic, every refusal wraps ErrCertificate, and only a certificate whose
// signature the issuer's key makes is accepted; CertificateIssuer agrees
// with what verification decoded.
func FuzzVerifyCertificate(f *testing.F) {
	start, expiry := time.Unix(1700000000, 0), time.Unix(1700003600, 0)
	good, err := IssueTemporaryCredentials("issuer", "issuer-secret", "named", []string{"a", "b:*"}, start, expiry)
	if err != nil {
		f.Fatal(err)
	}
	quoted, _ := json.Marshal(good.Certificate)
	for _, seed := range [][]byte{
		[]byte(good.Certificate), quoted,
		[]byte(`{"version": 1, "scopes": [], "start": 0, "expiry": 1, "seed": "` + strings.Repeat("a", 44) + `", "signature": "x"}`),
		[]byte(`{"version": 2}`), []byte(`null`), []byte(`"null"`), []byte(`""`), []byte(`[]`), []byte(`{"issuer": 5}`),
		[]byte(`{"version": 1e999}`), []byte(`{`),
	} {
		f.Add(seed, "named", "issuer-secret", int64(1700000100))
	}
	f.Fuzz(func(t *testing.T, raw []byte, clientID, key string, nowUnix int64) {
		now := time.Unix(nowUnix, 0)
		c, token, err := VerifyCertificate(raw, clientID, key, now)
		issuer, ierr := CertificateIssuer(raw)
		if err != nil {
			if !errors.Is(err, ErrCertificate) || token != "" {
				t.Fatalf("VerifyCertificate(%q) = %q, %v: want no token and ErrCertificate", raw, token, err)
			}
			return
		}
		if c.Version != 1 || len(c.Seed) != 44 || token != deriveAccessToken(key, c.Seed) {
			t.Fatalf("VerifyCertificate(%q) accepted %+v with token %q", raw, c, token)
		}
		if want := hmacBase64(key, c.signingString(clientID), base64.StdEncoding); c.Signature != want {
			t.Fatalf("VerifyCertificate(%q) accepted signature %q, want %q", raw, c.Signature, want)
		}
		if _, _, err := VerifyCertificate(raw, clientID, key+"x", now); err == nil {
			t.Fatalf("certificate %q verifies with another key", raw)
		}
		if ierr != nil || issuer != c.Issuer {
			t.Fatalf("CertificateIssuer(%q) = %q, %v; verification decoded issuer %q", raw, issuer, ierr, c.Issuer)
		}
	})
}

// FuzzIssueAndVerify: credentials the embedded auth issues verify for
// their client ID with the issuer's key, between start and expiry.
func FuzzIssueAndVerify(f *testing.F) {
	f.Add("issuer", "secret", "client", "a\nb", int64(1700000000), int64(3600))
	f.Add("", "", "x", "", int64(0), int64(0))
	f.Fuzz(func(t *testing.T, issuer, key, clientID, scopeText string, startUnix, validFor int64) {
		if validFor < 0 || validFor > 1<<40 || startUnix < 0 || startUnix > 1<<40 {
			return
		}
		var scopes []string
		if scopeText != "" {
			scopes = strings.Split(scopeText, "\n")
		}
		if !utf8.ValidString(issuer) || !utf8.ValidString(clientID) || !utf8.ValidString(scopeText) {
			return // JSON cannot carry them unchanged
		}
		start := time.Unix(startUnix, 0)
		creds, err := IssueTemporaryCredentials(issuer, key, clientID, scopes, start, start.Add(time.Duration(validFor)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		c, token, err := VerifyCertificate([]byte(creds.Certificate), clientID, key, start)
		if err != nil {
			t.Fatalf("issued certificate %s does not verify: %v", creds.Certificate, err)
		}
		if token != creds.AccessToken || c.Issuer != issuer || !slices.Equal(c.Scopes, append([]string{}, scopes...)) {
			t.Fatalf("verified %+v, token %q; issued %+v", c, token, creds)
		}
		if issuer != "" {
			if _, _, err := VerifyCertificate([]byte(creds.Certificate), clientID+"x", key, start); err == nil {
				t.Fatal("a named certificate verifies for another client ID")
			}
		}
	})
}

// FuzzParseBewit: any request URI is parsed or refused without a panic; a
// URL the queue signs parses back to its client and expiry and verifies.
func FuzzParseBewit(f *testing.F) {
	f.Add("/api/queue/v1/task/x/artifacts/private%2Fa?bewit=bWVcMTIzXG1hY1w&x=1", "me", int64(1700000000), "/api/queue/v1/task/x/artifacts/private%2Fa")
	f.Add("/a?x=1&bewit=", "task-client/a/0", int64(0), "/a?x=1")
	f.Add("/?bewit===", "c", int64(-1), "/")
	f.Fuzz(func(t *testing.T, requestURI, clientID string, exp int64, path string) {
		b, ok, err := ParseBewit(requestURI)
		if (!ok && err != nil) || (err == nil && ok && (b.ID == "" || b.mac == "")) {
			t.Fatalf("ParseBewit(%q) = %+v, %v, %v", requestURI, b, ok, err)
		}
		if !clientIDPattern.MatchString(clientID) || !strings.HasPrefix(path, "/") || strings.Contains(path, "bewit=") || strings.ContainsAny(path, "#") {
			return
		}
		u, err := url.Parse("http://127.0.0.1:8080" + path)
		if err != nil || u.Host != "127.0.0.1:8080" {
			return
		}
		signed, err := SignURL(u.String(), clientID, "secret", time.Unix(exp, 0))
		if err != nil {
			t.Fatalf("SignURL(%q): %v", u, err)
		}
		su, err := url.Parse(signed)
		if err != nil {
			t.Fatalf("signed URL %q does not parse: %v", signed, err)
		}
		b, ok, err = ParseBewit(su.RequestURI())
		if !ok || err != nil || b.ID != clientID || b.Expiry.Unix() != exp || b.Resource != u.RequestURI() {
			t.Fatalf("signed %q parses as %+v, %v, %v; want id %q, expiry %d, resource %q", signed, b, ok, err, clientID, exp, u.RequestURI())
		}
		if !b.Valid("secret", "GET", "127.0.0.1", 8080) || b.Valid("other", "GET", "127.0.0.1", 8080) {
			t.Fatalf("signed %q: the MAC does not verify with exactly its key", signed)
		}
	})
}

// FuzzSignedRequestVerifies: a request the client signs for any URL
// verifies on the server, which sees the URL's Host header and request
// URI: both sides agree on host, port and resource.
func FuzzSignedRequestVerifies(f *testing.F) {
	for _, u := range []string{
		"http://127.0.0.1:8080/api/queue/v1/task/abc%2Fdef/status?x=1",
		"https://tc.example.com/api/queue/v1/ping",
		"http://[::1]:8080/x",
		"http://[::1]/x",
		"https://[fe80::1%25eth0]/x",
		"http://Example.COM/a b",
		"http://h:/x",
	} {
		f.Add("GET", u)
	}
	f.Fuzz(func(t *testing.T, method, rawURL string) {
		u, err := url.Parse(rawURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return
		}
		h, err := tc.SignRequest(tc.Credentials{ClientID: "me", AccessToken: "secret"}, method, u, time.Unix(1700000000, 0))
		if err != nil {
			return // a port that is not a number
		}
		a, mac, err := ParseHeader(h)
		if err != nil {
			t.Fatalf("ParseHeader(%q): %v", h, err)
		}
		a.Method, a.Resource = method, u.RequestURI()
		if a.Host, a.Port, err = SplitHostPort(u.Host, u.Scheme == "https"); err != nil {
			t.Fatalf("the client signed for %q but the server cannot split its Host %q: %v", rawURL, u.Host, err)
		}
		if a.MAC("secret") != mac {
			t.Fatalf("a request to %q does not verify: the server sees host %q port %d", rawURL, a.Host, a.Port)
		}
	})
}
