package hawkserver

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestBewitRoundTrip(t *testing.T) {
	exp := time.Unix(1800000000, 0)
	for _, tt := range []struct {
		name, raw, resource string
	}{
		{"no query", "http://q.example:8080/api/queue/v1/task/T/artifacts/private%2Fx", "/api/queue/v1/task/T/artifacts/private%2Fx"},
		{"with a query", "https://q.example/a/b?x=1", "/a/b?x=1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			signed, err := SignURL(tt.raw, "static/taskcluster/index", "key", exp)
			if err != nil {
				t.Fatal(err)
			}
			u, _ := url.Parse(signed)
			b, ok, err := ParseBewit(u.RequestURI())
			if !ok || err != nil {
				t.Fatalf("ParseBewit(%s) = %v, %v", signed, ok, err)
			}
			if b.ID != "static/taskcluster/index" || !b.Expiry.Equal(exp) || b.Resource != tt.resource {
				t.Errorf("bewit = %+v, want resource %s", b, tt.resource)
			}
			host, port, _ := SplitHostPort(u.Host, u.Scheme == "https")
			if !b.Valid("key", "GET", host, port) {
				t.Error("the bewit does not verify")
			}
			if b.Valid("other", "GET", host, port) || b.Valid("key", "GET", "other.example", port) || b.Valid("key", "GET", host, port+1) {
				t.Error("the bewit verifies with another key, host or port")
			}
		})
	}
}

func TestParseBewit(t *testing.T) {
	good := strings.Split(mustSign(t), "bewit=")[1]
	for _, tt := range []struct {
		uri, resource string
		ok, err       bool
	}{
		{"/a?x=1", "", false, false},
		{"/a?bewit=" + good, "/a", true, false},
		{"/a?bewit=" + good + "&x=1", "/a?x=1", true, false},
		{"/a?x=1&bewit=" + good + "&y=2", "/a?x=1&y=2", true, false},
		{"/a?bewit=%%%", "", true, true},
		{"/a?bewit=" + "YWJj", "", true, true}, // "abc": not four parts
	} {
		b, ok, err := ParseBewit(tt.uri)
		if ok != tt.ok || (err != nil) != tt.err || (err == nil && ok && b.Resource != tt.resource) {
			t.Errorf("ParseBewit(%q) = %+v, %v, %v", tt.uri, b, ok, err)
		}
	}
}

func mustSign(t *testing.T) string {
	t.Helper()
	s, err := SignURL("http://h/a", "id", "key", time.Unix(1800000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	return s
}
