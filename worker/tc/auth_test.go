package tc

import (
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAuthScopeCalls(t *testing.T) {
	srv := fakeService(t, testVerifier(), func(w http.ResponseWriter, r *http.Request, _ *hawkResult) {
		switch r.Method + " " + r.URL.Path {
		case "POST /api/auth/v1/scopes/expand":
			if got := string(readBody(t, r)); got != `{"scopes":["assume:a","b"]}` {
				t.Errorf("expandScopes body = %s", got)
			}
			w.Write([]byte(`{"scopes":["a-scope","assume:a","b"]}`))
		case "GET /api/auth/v1/scopes/current":
			w.Write([]byte(`{"scopes":["queue:*"]}`))
		default:
			t.Errorf("unexpected %s %s", r.Method, r.URL)
		}
	})
	c := testClient(srv, -1)
	got, err := c.ExpandScopes(t.Context(), []string{"assume:a", "b", "assume:a"})
	if diff := cmp.Diff([]string{"a-scope", "assume:a", "b"}, got); err != nil || diff != "" {
		t.Errorf("ExpandScopes = %v (-want +got):\n%s", err, diff)
	}
	cur, err := c.CurrentScopes(t.Context())
	if diff := cmp.Diff([]string{"queue:*"}, cur); err != nil || diff != "" {
		t.Errorf("CurrentScopes = %v (-want +got):\n%s", err, diff)
	}
}
