package localqueue

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"go.dockerworker.dev/docker-worker/worker/localqueue/internal/hawkserver"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// The expansion rules of Taskcluster's auth service, with the examples of
// its documentation first.
func TestExpandScopes(t *testing.T) {
	docRoles := []Role{
		{RoleID: "group:admins", Scopes: []string{"admin-scope-1", "admin-scope-2", "assume:group:devs"}},
		{RoleID: "group:devs", Scopes: []string{"dev-scope"}},
		{RoleID: "repo:github.com/taskcluster/taskcluster-auth", Scopes: []string{"secrets:get:auth-tests"}},
		{RoleID: "hook-id:taskcluster/*", Scopes: []string{"queue:create-task:aws-provisioner/taskcluster-hooks"}},
	}
	paramRoles := []Role{
		{RoleID: "project-admin:*", Scopes: []string{"assume:hook-id:project-<..>/*", "project:<..>:*", "index:insert-task:project.<..>.*", "auth:list-clients"}},
		{RoleID: "hook-id:project-a/nightly", Scopes: []string{"queue:create-task:highest:proj-a/ci"}},
		{RoleID: "repo:github.com/*", Scopes: []string{"assume:project-admin:<..>"}},
		{RoleID: "plain", Scopes: []string{"keep:<..>"}}, // not a * role: <..> is literal
	}
	for _, tt := range []struct {
		name   string
		roles  []Role
		scopes []string
		want   []string
	}{
		{"docs: roles refer to roles", docRoles, []string{"assume:group:admins", "my-scope"},
			[]string{"admin-scope-1", "admin-scope-2", "assume:group:admins", "assume:group:devs", "dev-scope", "my-scope"}},
		{"docs: an assume scope ending in * gets the roles it prefixes", docRoles, []string{"assume:repo:github.com/taskcluster/*"},
			[]string{"assume:repo:github.com/taskcluster/*", "secrets:get:auth-tests"}},
		{"docs: a role ending in * applies to the ids it prefixes", docRoles, []string{"assume:hook-id:taskcluster/nightly-diagnostics"},
			[]string{"assume:hook-id:taskcluster/nightly-diagnostics", "queue:create-task:aws-provisioner/taskcluster-hooks"}},
		{"no assume scopes", docRoles, []string{"b", "a"}, []string{"a", "b"}},
		{"unknown role", docRoles, []string{"assume:group:nobody"}, []string{"assume:group:nobody"}},
		{"exact id only", docRoles, []string{"assume:group:dev"}, []string{"assume:group:dev"}},
		{"parameter substituted", paramRoles, []string{"assume:project-admin:b"}, []string{
			"assume:hook-id:project-b/*", "assume:project-admin:b", "auth:list-clients", "index:insert-task:project.b.*", "project:b:*",
		}},
		{"parameter, then an exact role it implies", paramRoles, []string{"assume:project-admin:a"}, []string{
			"assume:hook-id:project-a/*", "assume:project-admin:a", "auth:list-clients", "index:insert-task:project.a.*", "project:a:*",
			"queue:create-task:highest:proj-a/ci",
		}},
		{"parameter ending in * cuts the scope after it", paramRoles, []string{"assume:project-admin:a*"}, []string{
			"assume:hook-id:project-a*", "assume:project-admin:a*", "auth:list-clients", "index:insert-task:project.a*", "project:a*",
			"queue:create-task:highest:proj-a/ci",
		}},
		{"parameterized roles chain", paramRoles, []string{"assume:repo:github.com/b"}, []string{
			"assume:hook-id:project-b/*", "assume:project-admin:b", "assume:repo:github.com/b", "auth:list-clients",
			"index:insert-task:project.b.*", "project:b:*",
		}},
		{"a star shorter than the role id gets every parameter", paramRoles, []string{"assume:proj*"}, []string{
			"assume:hook-id:project-*", "assume:proj*", "auth:list-clients", "index:insert-task:project.*", "project:*",
			"queue:create-task:highest:proj-a/ci",
		}},
		{"<..> of a role without * is literal", paramRoles, []string{"assume:plain"}, []string{"assume:plain", "keep:<..>"}},
		{"* covers everything", paramRoles, []string{"*", "assume:plain"}, []string{"*"}},
		{"a prefix of assume: with * gets every role", docRoles, []string{"assu*"}, []string{
			"admin-scope-1", "admin-scope-2", "assu*", "dev-scope", "queue:create-task:aws-provisioner/taskcluster-hooks", "secrets:get:auth-tests",
		}},
		{"normalised: covered and duplicate scopes go, stars first", nil, []string{"b", "a:x", "a*", "b", "a", "c:*", "c:"}, []string{"a*", "b", "c:*"}},
		{"empty", docRoles, []string{}, []string{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := CheckRoles(tt.roles); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, expandScopes(tt.roles, tt.scopes)); diff != "" {
				t.Errorf("expandScopes(%q) (-want +got):\n%s", tt.scopes, diff)
			}
		})
	}
}

func TestCompareScopes(t *testing.T) {
	// The order of Taskcluster's scopeCompare documentation.
	want := []string{"*", "", "a*", "a", "a(", "aa", "b"}
	got := normalizeScopes([]string{"b", "aa", "a(", "a", "a*", "", "*"})
	if diff := cmp.Diff([]string{"*"}, got); diff != "" {
		t.Errorf("normalised (-want +got):\n%s", diff)
	}
	for i := range want {
		for j := range want {
			if c := compareScopes(want[i], want[j]); (c < 0) != (i < j) || (c == 0) != (i == j) {
				t.Errorf("compareScopes(%q, %q) = %d", want[i], want[j], c)
			}
		}
	}
}

func TestCheckRoles(t *testing.T) {
	for _, tt := range []struct {
		name  string
		roles []Role
		want  []string // substrings of the error; none: valid
	}{
		{"valid", []Role{{RoleID: "a", Scopes: []string{"assume:b"}}, {RoleID: "b*", Scopes: []string{"x:<..>"}}}, nil},
		{"no roles", nil, nil},
		{"empty id", []Role{{Scopes: []string{"x"}}}, []string{"roles[0]: roleId is required"}},
		{"duplicate", []Role{{RoleID: "a"}, {RoleID: "a"}}, []string{`roles[1]: roleId "a" is configured twice`}},
		{"not ASCII", []Role{{RoleID: "é"}, {RoleID: "b", Scopes: []string{"\n"}}}, []string{`roleId "é"`, `scope "\n" must be printable ASCII`}},
		{"two parameters", []Role{{RoleID: "a*", Scopes: []string{"x:<..>:<..>"}}}, []string{"more than one <..>"}},
		{"ambiguous star", []Role{{RoleID: "a*", Scopes: []string{"x:*<..>"}}}, []string{"ambiguous star"}},
		{"assumes itself", []Role{{RoleID: "a", Scopes: []string{"assume:a"}}}, []string{"cycles", "'a' -> 'a'"}},
		{"cycle of two", []Role{{RoleID: "a", Scopes: []string{"assume:b"}}, {RoleID: "b", Scopes: []string{"assume:a*"}}}, []string{"'a' -> 'b' -> 'a'"}},
		{"parameter grows without end", []Role{{RoleID: "a*", Scopes: []string{"assume:ab<..>"}}}, []string{"'a*' -> 'a*'"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckRoles(tt.roles)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("CheckRoles = %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("CheckRoles accepted the roles")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	if _, err := New(Config{RootURL: "http://127.0.0.1:1", DataDir: t.TempDir(), Roles: []Role{{RoleID: "a", Scopes: []string{"assume:a"}}}}); err == nil {
		t.Error("New accepted cyclic roles")
	}
}

var testRoles = []Role{
	{RoleID: "reader", Scopes: []string{"queue:status:*", "queue:get-task:*"}},
	{RoleID: "anonymous", Scopes: []string{"queue:status:*"}},
	{RoleID: "indexer:*", Scopes: []string{"index:insert-task:<..>.*"}},
	{RoleID: "run-role", Scopes: []string{"assume:indexer:runs"}},
}

// The queue's own scope checks see the scopes roles grant: to clients,
// temporary credentials (a task's scopes), authorizedScopes and anonymous
// requests alike.
func TestScopeChecksHonourRoles(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Roles = testRoles
		c.AnonymousScopes = []string{"assume:anonymous"}
		c.Clients = append(c.Clients, Client{ClientID: "assumer", AccessToken: "assumer-secret", Scopes: []string{"assume:reader", "assume:indexer:proj", "auth:create-client:assumer/*"}})
	})
	def := e.taskDef(testQueueID)
	def["scopes"] = []string{"assume:run-role"}
	taskID, _ := e.createTask(def)
	assumer := &tc.Credentials{ClientID: "assumer", AccessToken: "assumer-secret"}

	e.call("GET", "/task/"+taskID, assumer, nil, 200, "queue/v1/task.json", nil)
	e.callErr("POST", "/task/"+taskID+"/cancel", assumer, nil, codeInsufficientScopes)
	e.call("GET", "/task/"+taskID+"/status", nil, nil, 200, "queue/v1/task-status-response.json", nil) // anonymous → role anonymous
	e.callErr("GET", "/task/"+taskID, nil, nil, codeInsufficientScopes)

	// authorizedScopes may name scopes that only a role grants.
	narrowed := &tc.Credentials{ClientID: "assumer", AccessToken: "assumer-secret", AuthorizedScopes: []string{"queue:get-task:*"}}
	e.call("GET", "/task/"+taskID, narrowed, nil, 200, "queue/v1/task.json", nil)
	e.callErr("GET", "/task/"+taskID+"/status", narrowed, nil, codeInsufficientScopes)
	// Temporary credentials issued by a client: the certificate's scopes
	// must be within the issuer's expanded scopes, and are expanded in turn.
	now := e.now()
	temp, err := hawkserver.IssueTemporaryCredentials("assumer", "assumer-secret", "assumer/temp", []string{"queue:status:*", "assume:reader"}, now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	e.call("GET", "/task/"+taskID, &temp, nil, 200, "queue/v1/task.json", nil)

	// A parameterized role: indexer:proj may insert under proj.*, only.
	in := map[string]any{"taskId": taskID, "rank": 0, "data": map[string]any{}, "expires": formatTime(now.Add(time.Hour))}
	body, _ := json.Marshal(in)
	for path, want := range map[string]int{"proj.x": http.StatusOK, "other.x": http.StatusForbidden} {
		resp, b := e.requestURL("PUT", e.root+"/api/index/v1/task/"+path, assumer, body, nil)
		if resp.StatusCode != want {
			t.Errorf("insertTask %s = %d %s, want %d", path, resp.StatusCode, b, want)
		}
	}
	// A run's credentials carry the task's scopes, and what their roles grant.
	claims := e.claim(testQueueID, 1)
	run := credsOf(claims[0].Credentials)
	for path, want := range map[string]int{"runs.x": http.StatusOK, "proj.y": http.StatusForbidden} {
		resp, b := e.requestURL("PUT", e.root+"/api/index/v1/task/"+path, run, body, nil)
		if resp.StatusCode != want {
			t.Errorf("insertTask %s with the run's credentials = %d %s, want %d", path, resp.StatusCode, b, want)
		}
	}
}

// TestAuthConformance drives the auth routes with the tc client, every
// exchange checked against the reference.
func TestAuthConformance(t *testing.T) {
	c := newConfEnv(t, func(c *Config) {
		c.Roles = testRoles
		c.Clients = append(c.Clients, Client{ClientID: "assumer", AccessToken: "assumer-secret", Scopes: []string{"assume:reader", "auth:current-scopes"}})
	})
	ctx := t.Context()
	anon := tc.New(tc.Config{RootURL: c.root, HTTPClient: &http.Client{Transport: c.rec}, Retries: -1})
	if err := c.admin.Request(ctx, serviceAuth, "GET", "/ping", nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	got, err := anon.ExpandScopes(ctx, []string{"assume:indexer:a.b", "assume:run-role", "other", "other"})
	want := []string{"assume:indexer:a.b", "assume:indexer:runs", "assume:run-role", "index:insert-task:a.b.*", "index:insert-task:runs.*", "other"}
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("expandScopes (-want +got):\n%s", diff)
	}
	if got, err := c.admin.ExpandScopes(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("expandScopes of nothing = %q, %v", got, err)
	}
	_, err = c.nobody.ExpandScopes(ctx, []string{"x"})
	wantCode(t, "expandScopes without scopes", err, codeInsufficientScopes)

	assumer := c.admin.WithCredentials(tc.Credentials{ClientID: "assumer", AccessToken: "assumer-secret"})
	cur, err := assumer.CurrentScopes(ctx)
	if diff := cmp.Diff([]string{"assume:reader", "auth:current-scopes", "queue:get-task:*", "queue:status:*"}, cur); err != nil || diff != "" {
		t.Errorf("currentScopes = %v (-want +got):\n%s", err, diff)
	}
	if cur, err := anon.CurrentScopes(ctx); err != nil || !slices.Contains(cur, "index:find-task:*") {
		t.Errorf("anonymous currentScopes = %q, %v", cur, err)
	}
	_, err = c.nobody.CurrentScopes(ctx)
	wantCode(t, "currentScopes without scopes", err, codeInsufficientScopes)

	for _, tt := range []struct {
		name string
		body string
		code string
	}{
		{"not JSON", "{", codeMalformedPayload},
		{"no scopes", "{}", codeInputValidationError},
		{"not a list", `{"scopes": "x"}`, codeInputValidationError},
		{"not ASCII", `{"scopes": ["\u00e9"]}`, codeInputValidationError},
		{"duplicates", `{"scopes": ["x", "x"]}`, codeInputValidationError},
		{"unknown property", `{"scopes": [], "roles": []}`, codeInputValidationError},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			resp, b := c.requestURL("POST", c.root+"/api/auth/v1/scopes/expand", &adminCreds, []byte(tt.body), nil)
			if resp.StatusCode != codeStatus[tt.code] {
				t.Fatalf("expandScopes %s = %d %s, want %d", tt.body, resp.StatusCode, b, codeStatus[tt.code])
			}
			checkErrorBody(t, b, tt.code)
		})
	}
	c.t = t
	c.checkExercised(serviceAuth)
}

// Roles leave a queue without them as it was: no expansion, the scopes as
// configured.
func TestNoRolesNoExpansion(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Clients = append(c.Clients, Client{ClientID: "c", AccessToken: "s", Scopes: []string{"b", "a", "assume:x"}})
	})
	if got := e.q.clients["c"].Scopes; !cmp.Equal(got, []string{"b", "a", "assume:x"}) {
		t.Errorf("client scopes = %q", got)
	}
}
