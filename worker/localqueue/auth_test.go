package localqueue

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/localqueue/internal/hawkserver"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

func TestAuthenticationFailures(t *testing.T) {
	e := newEnv(t, nil)
	taskID, _ := e.createTask(e.taskDef(testQueueID))
	path := "/task/" + taskID + "/cancel"
	u, _ := url.Parse(e.root + "/api/queue/v1" + path)
	now := e.now()

	expired, err := hawkserver.IssueTemporaryCredentials(issuerClientID, testIssuerToken, "task-client/old", []string{"*"}, now.Add(-2*time.Hour), now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	forged, err := hawkserver.IssueTemporaryCredentials(issuerClientID, "not-the-issuer-secret", "task-client/forged", []string{"*"}, now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	unknownIssuer, err := hawkserver.IssueTemporaryCredentials("nobody", "whatever", "task-client/x", []string{"*"}, now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}

	sign := func(c tc.Credentials, at time.Time) string {
		h, err := tc.SignRequest(c, "POST", u, at)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	replayed := sign(adminCreds, now)

	for _, tt := range []struct {
		name   string
		header string
	}{
		{"wrong key", sign(tc.Credentials{ClientID: adminCreds.ClientID, AccessToken: "wrong"}, now)},
		{"unknown client", sign(tc.Credentials{ClientID: "stranger", AccessToken: "x"}, now)},
		{"stale timestamp", sign(adminCreds, now.Add(-20*time.Minute))},
		{"future timestamp", sign(adminCreds, now.Add(20*time.Minute))},
		{"expired temporary credentials", sign(expired, now)},
		{"forged certificate signature", sign(forged, now)},
		{"unknown certificate issuer", sign(unknownIssuer, now)},
		{"issuer's own id without certificate", sign(tc.Credentials{ClientID: issuerClientID, AccessToken: testIssuerToken}, now)},
		{"not Hawk", "Bearer abc"},
		{"replayed nonce", replayed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "replayed nonce" {
				req, _ := http.NewRequest("POST", u.String(), nil)
				req.Header.Set("Authorization", replayed)
				if resp, b := e.do(req); resp.StatusCode != 200 {
					t.Fatalf("first use of the header = %d %s", resp.StatusCode, b)
				}
			}
			req, _ := http.NewRequest("POST", u.String(), nil)
			req.Header.Set("Authorization", tt.header)
			resp, b := e.do(req)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status = %d %s, want 401", resp.StatusCode, b)
			}
			eb := checkErrorBody(t, b, codeAuthenticationFailed)
			if eb.RequestInfo.Method != "cancelTask" {
				t.Errorf("requestInfo.method = %q", eb.RequestInfo.Method)
			}
		})
	}

	// A signature for another path (or host) does not carry over.
	other, _ := url.Parse(e.root + "/api/queue/v1/task/" + taskID + "/status")
	h, _ := tc.SignRequest(adminCreds, "POST", other, now)
	req, _ := http.NewRequest("POST", u.String(), nil)
	req.Header.Set("Authorization", h)
	if resp, b := e.do(req); resp.StatusCode != 401 {
		t.Fatalf("signature for another resource = %d %s", resp.StatusCode, b)
	}
	// Reads accept unauthenticated requests, but not bad signatures.
	e.call("GET", "/task/"+taskID+"/status", nil, nil, 200, "queue/v1/task-status-response.json", nil)
	bad := &tc.Credentials{ClientID: "admin", AccessToken: "wrong"}
	e.callErr("GET", "/task/"+taskID+"/status", bad, nil, codeAuthenticationFailed)
}

func TestAuthenticationAccepted(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Clients = append(c.Clients, Client{ClientID: "limited", AccessToken: "limited-secret", Scopes: []string{"queue:cancel-task:*", "queue:status:*", "auth:create-client:limited/*"}})
	})
	taskID, _ := e.createTask(e.taskDef(testQueueID))
	now := e.now()
	// Temporary credentials issued by a configured client.
	temp, err := hawkserver.IssueTemporaryCredentials("limited", "limited-secret", "limited/temp", []string{"queue:cancel-task:*", "queue:status:*"}, now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	e.call("GET", "/task/"+taskID+"/status", &temp, nil, 200, "queue/v1/task-status-response.json", nil)
	withScopes := tc.Credentials{ClientID: "limited", AccessToken: "limited-secret", AuthorizedScopes: []string{"queue:status:*"}}
	e.call("GET", "/task/"+taskID+"/status", &withScopes, nil, 200, "queue/v1/task-status-response.json", nil)
}

// The scopes a request carries: the client's, a certificate's (which the
// issuer must hold) or authorizedScopes (which must not overstep).
func TestAuthenticatedScopes(t *testing.T) {
	q, err := New(Config{
		RootURL:           "http://127.0.0.1:1",
		DataDir:           t.TempDir(),
		IssuerAccessToken: testIssuerToken,
		Clients:           []Client{{ClientID: "c", AccessToken: "s", Scopes: []string{"queue:a:*", "queue:b", "auth:create-client:c/*"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	temp, _ := hawkserver.IssueTemporaryCredentials("c", "s", "c/temp", []string{"queue:a:x", "queue:b"}, now, now.Add(time.Hour))
	tooWide, _ := hawkserver.IssueTemporaryCredentials("c", "s", "c/temp", []string{"queue:a:x", "queue:c"}, now, now.Add(time.Hour))
	otherName, _ := hawkserver.IssueTemporaryCredentials("c", "s", "admin", []string{"queue:a:x"}, now, now.Add(time.Hour))
	for _, tt := range []struct {
		name    string
		creds   tc.Credentials
		want    []string
		wantErr string
	}{
		{"permanent", tc.Credentials{ClientID: "c", AccessToken: "s"}, []string{"queue:a:*", "queue:b", "auth:create-client:c/*"}, ""},
		{"authorizedScopes", tc.Credentials{ClientID: "c", AccessToken: "s", AuthorizedScopes: []string{"queue:a:y", "queue:b"}}, []string{"queue:a:y", "queue:b"}, ""},
		{"authorizedScopes overstepping", tc.Credentials{ClientID: "c", AccessToken: "s", AuthorizedScopes: []string{"queue:a:y", "queue:z"}}, nil, "oversteps"},
		{"certificate", temp, []string{"queue:a:x", "queue:b"}, ""},
		{"certificate beyond its issuer", tooWide, nil, "sufficient scopes"},
		{"certificate named outside auth:create-client", otherName, nil, "doesn't have `auth:create-client:admin`"},
		{"certificate narrowed", tc.Credentials{ClientID: temp.ClientID, AccessToken: temp.AccessToken, Certificate: temp.Certificate, AuthorizedScopes: []string{"queue:b"}}, []string{"queue:b"}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u, _ := url.Parse("http://127.0.0.1:1/api/queue/v1/ping")
			h, err := tc.SignRequest(tt.creds, "GET", u, now)
			if err != nil {
				t.Fatal(err)
			}
			r, _ := http.NewRequest("GET", u.String(), nil)
			r.RequestURI = u.RequestURI()
			r.Header.Set("Authorization", h)
			ai, err := q.authenticate(r, nil, now)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("authenticate = %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ai.Scopes, tt.want) {
				t.Errorf("scopes = %v, want %v", ai.Scopes, tt.want)
			}
		})
	}
}

func TestServe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	q, err := New(Config{RootURL: "http://" + ln.Addr().String(), DataDir: t.TempDir(), ClaimWait: time.Minute, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, q) }()

	resp, err := http.Get("http://" + ln.Addr().String() + "/api/queue/v1/ping")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("ping = %d", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve = %v, want nil after cancel", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	for name, cfg := range map[string]Config{
		"no root URL":     {DataDir: dir},
		"relative root":   {RootURL: "/x", DataDir: dir},
		"no data dir":     {RootURL: "http://127.0.0.1:1"},
		"reserved client": {RootURL: "http://127.0.0.1:1", DataDir: dir, Clients: []Client{{ClientID: issuerClientID, AccessToken: "x"}}},
		"duplicate client": {RootURL: "http://127.0.0.1:1", DataDir: dir, Clients: []Client{
			{ClientID: "a", AccessToken: "x"}, {ClientID: "a", AccessToken: "y"}}},
		"client without token": {RootURL: "http://127.0.0.1:1", DataDir: dir, Clients: []Client{{ClientID: "a"}}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%s) succeeded", name)
		}
	}
}

// Named temporary credentials are a client of that name for their
// lifetime: the issuer must hold auth:create-client:<name>, or the request
// is refused (401) with the auth service's message; one that holds it
// (directly, by a trailing *, or through a role) may name them.
func TestNamedCredentialsNeedCreateClient(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Clients = append(c.Clients,
			Client{ClientID: "minter", AccessToken: "minter-secret", Scopes: []string{"queue:status:*", "auth:create-client:minted/*"}},
			Client{ClientID: "via-role", AccessToken: "via-role-secret", Scopes: []string{"queue:status:*", "assume:project:minting"}},
			Client{ClientID: "plain", AccessToken: "plain-secret", Scopes: []string{"queue:status:*"}},
		)
		c.Roles = []Role{{RoleID: "project:minting", Scopes: []string{"auth:create-client:project/*"}}}
	})
	taskID, _ := e.createTask(e.taskDef(testQueueID))
	path := "/task/" + taskID + "/status"
	now := e.now()
	issue := func(issuer, key, name string) *tc.Credentials {
		c, err := hawkserver.IssueTemporaryCredentials(issuer, key, name, []string{"queue:status:*"}, now, now.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return &c
	}
	for _, ok := range []*tc.Credentials{
		issue("minter", "minter-secret", "minted/one"),
		issue("via-role", "via-role-secret", "project/two"),
		issue(issuerClientID, testIssuerToken, "task-client/any"), // the queue's own issuer holds *
	} {
		e.call("GET", path, ok, nil, 200, "queue/v1/task-status-response.json", nil)
	}
	for _, tt := range []struct {
		creds *tc.Credentials
		want  string
	}{
		{issue("minter", "minter-secret", "admin"), "ext.certificate issuer `minter` doesn't have `auth:create-client:admin` for supplied clientId."},
		{issue("plain", "plain-secret", "plain/temp"), "ext.certificate issuer `plain` doesn't have `auth:create-client:plain/temp` for supplied clientId."},
		{issue("via-role", "via-role-secret", "minted/x"), "ext.certificate issuer `via-role` doesn't have `auth:create-client:minted/x` for supplied clientId."},
		{issue("minter", "minter-secret", "minter"), "ext.certificate.issuer must differ from the supplied clientId"},
	} {
		resp, b := e.request("GET", path, tt.creds, nil)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s: status = %d %s, want 401", tt.creds.ClientID, resp.StatusCode, b)
		}
		if eb := checkErrorBody(t, b, codeAuthenticationFailed); eb.Message != tt.want {
			t.Errorf("%s: message = %q, want %q", tt.creds.ClientID, eb.Message, tt.want)
		}
	}
}
