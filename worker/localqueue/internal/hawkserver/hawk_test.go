package hawkserver

import (
	"net/url"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/tc"
)

// A header signed by the client parses back into the same artifacts, and
// the MAC recomputed from the request as received matches.
func TestSignAndParseRoundTrip(t *testing.T) {
	u, _ := url.Parse("http://127.0.0.1:8080/api/queue/v1/task/abc%2Fdef/status?x=1")
	creds := tc.Credentials{ClientID: "me", AccessToken: "secret", AuthorizedScopes: []string{"a:b"}}
	h, err := tc.SignRequest(creds, "post", u, time.Unix(1700000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	a, mac, err := ParseHeader(h)
	if err != nil {
		t.Fatalf("ParseHeader(%q): %v", h, err)
	}
	if a.ID != "me" || a.TS != 1700000000 || a.Nonce == "" || a.Ext == "" {
		t.Fatalf("parsed %+v", a)
	}
	a.Method, a.Resource = "POST", "/api/queue/v1/task/abc%2Fdef/status?x=1"
	if a.Host, a.Port, err = SplitHostPort("127.0.0.1:8080", false); err != nil {
		t.Fatal(err)
	}
	if got := a.MAC("secret"); got != mac {
		t.Fatalf("recomputed MAC %s != header MAC %s", got, mac)
	}
	ext, err := ParseExt(a.Ext)
	if err != nil || !ext.HasAuthorized || len(ext.AuthorizedScopes) != 1 || ext.Certificate != nil {
		t.Fatalf("ext = %+v, %v", ext, err)
	}
}

func TestParseHeaderErrors(t *testing.T) {
	for _, h := range []string{
		"", "Basic abc", `Hawk id="a"`, `Hawk id="a", ts="x", nonce="n", mac="m"`,
		`Hawk id="a", ts="1", nonce="n", mac="m`, `Hawk id="a", id="b", ts="1", nonce="n", mac="m"`,
	} {
		if _, _, err := ParseHeader(h); err == nil {
			t.Errorf("ParseHeader(%q) succeeded", h)
		}
	}
}

func TestSplitHostPort(t *testing.T) {
	for _, tt := range []struct {
		in       string
		tls      bool
		wantHost string
		wantPort int
		wantErr  bool
	}{
		{"example.com", false, "example.com", 80, false},
		{"example.com", true, "example.com", 443, false},
		{"127.0.0.1:8080", false, "127.0.0.1", 8080, false},
		{"[::1]:9", true, "::1", 9, false},
		{"example.com:http", false, "", 0, true},
	} {
		host, port, err := SplitHostPort(tt.in, tt.tls)
		if (err != nil) != tt.wantErr || host != tt.wantHost || port != tt.wantPort {
			t.Errorf("SplitHostPort(%q, %v) = %q, %d, %v; want %q, %d, error %v", tt.in, tt.tls, host, port, err, tt.wantHost, tt.wantPort, tt.wantErr)
		}
	}
}

func TestParseExt(t *testing.T) {
	ext, err := tc.HawkExt(`{"version":1}`, []string{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := ParseExt(ext)
	if err != nil || string(e.Certificate) != `{"version":1}` || !e.HasAuthorized || len(e.AuthorizedScopes) != 0 {
		t.Errorf("ParseExt = %+v, %v", e, err)
	}
	if e, err := ParseExt(""); err != nil || e.Certificate != nil || e.HasAuthorized {
		t.Errorf("ParseExt(\"\") = %+v, %v", e, err)
	}
	for _, bad := range []string{"%%%", "bm90IGpzb24=" /* "not json" */} {
		if _, err := ParseExt(bad); err == nil {
			t.Errorf("ParseExt(%q) succeeded", bad)
		}
	}
}

// The payload hash of the Hawk specification's example.
func TestPayloadHash(t *testing.T) {
	if got, want := PayloadHash("text/plain; charset=utf-8", []byte("Thank you for flying Hawk")), "Yi9LfIIFRtBEPt74PVmbTF/xVAwPn7ub15ePICfgnuY="; got != want {
		t.Errorf("PayloadHash = %s, want %s", got, want)
	}
}
