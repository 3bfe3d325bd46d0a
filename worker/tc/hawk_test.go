package tc

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The example from the Hawk specification, quoted in taskcluster-protocol.md.
func TestHawkSpecificationExample(t *testing.T) {
	a := HawkArtifacts{
		ID: "dh37fgj492je", TS: 1353832234, Nonce: "j4h3g2", Method: "GET",
		Resource: "/resource/1?b=1&a=2", Host: "example.com", Port: 8000, Ext: "some-app-ext-data",
	}
	if got, want := a.MAC("werxhqb98rpaxn39848xrunpaw3489ruxnpa98w4rxn"), "6R4rV5iE+NPoym+WwjeHzjAGXUtLNIxmo1vpMofpLAE="; got != want {
		t.Fatalf("MAC = %s, want %s", got, want)
	}
}

func TestSignAndParseRoundTrip(t *testing.T) {
	u, _ := url.Parse("http://127.0.0.1:8080/api/queue/v1/task/abc%2Fdef/status?x=1")
	creds := Credentials{ClientID: "me", AccessToken: "secret", AuthorizedScopes: []string{"a:b"}}
	h, err := SignRequest(creds, "post", u, time.Unix(1700000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	a, mac, err := ParseHawkHeader(h)
	if err != nil {
		t.Fatalf("ParseHawkHeader(%q): %v", h, err)
	}
	if a.ID != "me" || a.TS != 1700000000 || a.Nonce == "" || a.Ext == "" {
		t.Fatalf("parsed %+v", a)
	}
	a.Method, a.Resource, a.Host, a.Port = "POST", "/api/queue/v1/task/abc%2Fdef/status?x=1", "127.0.0.1", 8080
	if got := a.MAC("secret"); got != mac {
		t.Fatalf("recomputed MAC %s != header MAC %s", got, mac)
	}
	ext, err := ParseExt(a.Ext)
	if err != nil || !ext.HasAuthorized || len(ext.AuthorizedScopes) != 1 || ext.Certificate != nil {
		t.Fatalf("ext = %+v, %v", ext, err)
	}
}

func TestHawkExtOmittedWithoutCertificateOrScopes(t *testing.T) {
	u, _ := url.Parse("https://tc.example.com/api/queue/v1/ping")
	h, err := SignRequest(Credentials{ClientID: "c", AccessToken: "t"}, "GET", u, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(h, "ext=") {
		t.Fatalf("header %q has ext", h)
	}
}

func TestParseHawkHeaderErrors(t *testing.T) {
	for _, h := range []string{
		"", "Basic abc", `Hawk id="a"`, `Hawk id="a", ts="x", nonce="n", mac="m"`,
		`Hawk id="a", ts="1", nonce="n", mac="m`, `Hawk id="a", id="b", ts="1", nonce="n", mac="m"`,
	} {
		if _, _, err := ParseHawkHeader(h); err == nil {
			t.Errorf("ParseHawkHeader(%q) succeeded", h)
		}
	}
}

func TestTemporaryCredentials(t *testing.T) {
	now := time.Now()
	id := "task-client/abc/0/on/wg/wid/until/1795320599.842"
	creds, err := IssueTemporaryCredentials("static/taskcluster/queue", "issuer-secret", id,
		[]string{"queue:reclaim-task:abc/0"}, now.Add(-time.Minute), now.Add(20*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	var c Certificate
	if err := json.Unmarshal([]byte(creds.Certificate), &c); err != nil {
		t.Fatal(err)
	}
	if len(c.Seed) != 44 || c.Issuer != "static/taskcluster/queue" || c.Version != 1 {
		t.Fatalf("certificate %+v", c)
	}
	got, token, err := VerifyCertificate([]byte(creds.Certificate), id, "issuer-secret", now)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if token != creds.AccessToken || got.Scopes[0] != "queue:reclaim-task:abc/0" {
		t.Fatalf("token %q vs %q, scopes %v", token, creds.AccessToken, got.Scopes)
	}
	// The string form (as returned by the queue) verifies too.
	str, _ := json.Marshal(creds.Certificate)
	if _, _, err := VerifyCertificate(str, id, "issuer-secret", now); err != nil {
		t.Fatalf("verify string form: %v", err)
	}
	for name, check := range map[string]func() error{
		"wrong issuer key": func() error { _, _, err := VerifyCertificate([]byte(creds.Certificate), id, "other", now); return err },
		"other clientId": func() error {
			_, _, err := VerifyCertificate([]byte(creds.Certificate), id+"x", "issuer-secret", now)
			return err
		},
		"expired": func() error {
			_, _, err := VerifyCertificate([]byte(creds.Certificate), id, "issuer-secret", now.Add(21*time.Minute))
			return err
		},
	} {
		if err := check(); err == nil {
			t.Errorf("%s: verified", name)
		}
	}
}
