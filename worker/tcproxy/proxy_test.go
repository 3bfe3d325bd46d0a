package tcproxy_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.dockerworker.dev/docker-worker/worker/tc"
	"go.dockerworker.dev/docker-worker/worker/tcproxy"
)

// seen is what the upstream received.
type seen struct {
	method, uri, host, body, contentType string
	auth                                 string
}

// upstream records requests, answers with a body echoing the path and,
// for /api/queue/v1/redirect, a redirect.
func upstream(t *testing.T) (*httptest.Server, func() []seen) {
	t.Helper()
	var mu sync.Mutex
	var got []seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, seen{r.Method, r.RequestURI, r.Host, string(b), r.Header.Get("Content-Type"), r.Header.Get("Authorization")})
		mu.Unlock()
		if strings.HasSuffix(r.URL.Path, "/redirect") {
			http.Redirect(w, r, "https://example.com/elsewhere", http.StatusSeeOther)
			return
		}
		w.Header().Set("X-Upstream", "yes")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, "answer to "+r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []seen {
		mu.Lock()
		defer mu.Unlock()
		return append([]seen(nil), got...)
	}
}

var hawkAttr = regexp.MustCompile(`(\w+)="([^"]*)"`)

// checkHawk verifies a Hawk header as the auth service would for a request
// of method to rawURL signed with accessToken, and returns its id and
// decoded ext.
func checkHawk(t *testing.T, header, method, rawURL, accessToken string) (string, map[string]json.RawMessage) {
	t.Helper()
	attrs := map[string]string{}
	for _, m := range hawkAttr.FindAllStringSubmatch(header, -1) {
		attrs[m[1]] = m[2]
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(u.Port())
	ts, _ := strconv.ParseInt(attrs["ts"], 10, 64)
	a := tc.HawkArtifacts{ID: attrs["id"], TS: ts, Nonce: attrs["nonce"], Method: method,
		Resource: u.RequestURI(), Host: u.Hostname(), Port: port, Hash: attrs["hash"], Ext: attrs["ext"]}
	if got, want := attrs["mac"], a.MAC(accessToken); got != want {
		t.Errorf("Hawk MAC %q does not verify with the expected access token (want %q); header %q", got, want, header)
	}
	ext := map[string]json.RawMessage{}
	if attrs["ext"] != "" {
		b, err := base64.StdEncoding.DecodeString(attrs["ext"])
		if err != nil {
			t.Fatalf("ext: %v", err)
		}
		if err := json.Unmarshal(b, &ext); err != nil {
			t.Fatalf("ext: %v", err)
		}
	}
	return attrs["id"], ext
}

func TestForwardsAndSigns(t *testing.T) {
	up, got := upstream(t)
	var n atomic.Int32
	creds := func() tcproxy.Credentials {
		i := n.Add(1)
		return tcproxy.Credentials{
			ClientID:    "task-client/" + strconv.Itoa(int(i)),
			AccessToken: "token-" + strconv.Itoa(int(i)),
			Certificate: `{"version":1,"seed":"s` + strconv.Itoa(int(i)) + `"}`,
		}
	}
	scopes := []string{"queue:create-artifact:custom", "queue:create-artifact:T/0"}
	p, err := tcproxy.New(tcproxy.Config{RootURL: up.URL + "/", Credentials: creds, AuthorizedScopes: scopes})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(p)
	t.Cleanup(front.Close)

	tests := []struct {
		name, method, path, body string
		wantURI                  string
	}{
		{"short form", "POST", "/queue/v1/task/T/runs/0/artifacts/custom?x=1", `{"storageType":"reference"}`, "/api/queue/v1/task/T/runs/0/artifacts/custom?x=1"},
		{"api form", "GET", "/api/secrets/v1/secret/a%2Fb", "", "/api/secrets/v1/secret/a%2Fb"},
		{"any service", "PUT", "/index/v1/task/some.name", "{}", "/api/index/v1/task/some.name"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), tt.method, front.URL+tt.path, strings.NewReader(tt.body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Hawk id=\"forged\"")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			if res.StatusCode != http.StatusCreated || res.Header.Get("X-Upstream") != "yes" {
				t.Errorf("status %d, headers %v: want the upstream's 201", res.StatusCode, res.Header)
			}
			if want := "answer to "; !strings.HasPrefix(string(b), want) {
				t.Errorf("body %q, want the upstream's", b)
			}
			s := got()[i]
			if s.method != tt.method || s.uri != tt.wantURI || s.body != tt.body || s.contentType != "application/json" {
				t.Errorf("upstream got %+v, want %s %s with body %q", s, tt.method, tt.wantURI, tt.body)
			}
			id, ext := checkHawk(t, s.auth, tt.method, up.URL+tt.wantURI, "token-"+strconv.Itoa(i+1))
			if want := "task-client/" + strconv.Itoa(i+1); id != want {
				t.Errorf("signed as %q, want %q (credentials read per request)", id, want)
			}
			var as []string
			json.Unmarshal(ext["authorizedScopes"], &as)
			if diff := cmp.Diff(scopes, as); diff != "" {
				t.Errorf("authorizedScopes (-want +got):\n%s", diff)
			}
			if want := `{"version":1,"seed":"s` + strconv.Itoa(i+1) + `"}`; string(ext["certificate"]) != want {
				t.Errorf("certificate %s, want %s", ext["certificate"], want)
			}
		})
	}
}

func TestRedirectsAndRefusals(t *testing.T) {
	up, got := upstream(t)
	allowed := netip.MustParsePrefix("127.0.0.0/8")
	creds := func() tcproxy.Credentials { return tcproxy.Credentials{ClientID: "c", AccessToken: "t"} }
	p, err := tcproxy.New(tcproxy.Config{RootURL: up.URL, Credentials: creds,
		Allow: func(a netip.Addr) bool { return allowed.Contains(a) }})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(p)
	t.Cleanup(front.Close)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	res, err := noFollow.Get(front.URL + "/queue/v1/task/T/artifacts/public/redirect")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "https://example.com/elsewhere" {
		t.Errorf("got %d to %q, want the upstream's 303 to https://example.com/elsewhere", res.StatusCode, res.Header.Get("Location"))
	}

	for _, path := range []string{"/", "/queue", "/api/queue", "/queue/"} {
		res, err := noFollow.Get(front.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", path, res.StatusCode)
		}
	}

	// A client outside the allowed addresses is refused before anything is
	// forwarded.
	allowed = netip.MustParsePrefix("10.0.0.0/8")
	before := len(got())
	res, err = noFollow.Get(front.URL + "/queue/v1/ping")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden || len(got()) != before {
		t.Errorf("status %d, %d requests forwarded: want 403 and none", res.StatusCode, len(got())-before)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	creds := func() tcproxy.Credentials { return tcproxy.Credentials{} }
	for _, cfg := range []tcproxy.Config{
		{RootURL: "", Credentials: creds},
		{RootURL: "example.com", Credentials: creds},
		{RootURL: "https://tc.example.com"},
	} {
		if _, err := tcproxy.New(cfg); err == nil {
			t.Errorf("New(%+v) = nil error, want one", cfg)
		}
	}
}
