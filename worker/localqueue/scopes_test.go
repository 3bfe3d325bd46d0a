package localqueue

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"go.dockerworker.dev/docker-worker/worker/scopes"
	"go.dockerworker.dev/docker-worker/worker/slugid"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

func TestScopeSatisfied(t *testing.T) {
	for _, tt := range []struct {
		have  []string
		scope string
		want  bool
	}{
		{[]string{"*"}, "anything:at:all", true},
		{[]string{"queue:get-artifact:public/*"}, "queue:get-artifact:public/logs/live.log", true},
		{[]string{"queue:get-artifact:public/*"}, "queue:get-artifact:private/x", false},
		{[]string{"queue:a"}, "queue:a", true},
		{[]string{"queue:a"}, "queue:ab", false},
		{[]string{"queue:a*"}, "queue:a", true},
		{[]string{"queue:*:x"}, "queue:y:x", false}, // only a trailing * is a wildcard
		{nil, "queue:a", false},
		{[]string{""}, "", true},
	} {
		if got := scopes.Satisfied(tt.have, tt.scope); got != tt.want {
			t.Errorf("scopes.Satisfied(%q, %q) = %v, want %v", tt.have, tt.scope, got, tt.want)
		}
	}
}

func TestScopeExpressions(t *testing.T) {
	params := map[string]any{
		"taskId": "T", "schedulerId": "S", "taskGroupId": "G", "projectId": "P",
		"names": []string{"public/a", "private/b"}, "empty": []string{},
		"private": true, "public": false,
	}
	for _, tt := range []struct {
		name string
		expr string
		have []string
		want bool
	}{
		{"plain", `"queue:status:<taskId>"`, []string{"queue:status:T"}, true},
		{"plain, other task", `"queue:status:<taskId>"`, []string{"queue:status:U"}, false},
		{"AllOf needs all", `{"AllOf":["a:<taskId>","b:<projectId>"]}`, []string{"a:T"}, false},
		{"AllOf satisfied", `{"AllOf":["a:<taskId>","b:<projectId>"]}`, []string{"a:*", "b:P"}, true},
		{"AnyOf needs one", `{"AnyOf":["a:<taskId>","b:<projectId>"]}`, []string{"b:P"}, true},
		{"AnyOf none", `{"AnyOf":["a:<taskId>","b:<projectId>"]}`, []string{"c"}, false},
		{"empty AnyOf is never satisfied", `{"AnyOf":[]}`, []string{"*"}, false},
		{"empty AllOf is always satisfied", `{"AllOf":[]}`, nil, true},
		{"for each, all given", `{"AllOf":[{"for":"name","in":"names","each":"queue:get-artifact:<name>"}]}`, []string{"queue:get-artifact:*"}, true},
		{"for each, one missing", `{"AllOf":[{"for":"name","in":"names","each":"queue:get-artifact:<name>"}]}`, []string{"queue:get-artifact:public/*"}, false},
		{"for each over nothing", `{"AllOf":[{"for":"n","in":"empty","each":"x:<n>"}]}`, nil, true},
		{"for each in AnyOf", `{"AnyOf":[{"for":"name","in":"names","each":"q:<name>"}]}`, []string{"q:private/b"}, true},
		{"nested", `{"AnyOf":["queue:cancel-task:<schedulerId>/<taskGroupId>/<taskId>",{"AllOf":["queue:cancel-task","assume:scheduler-id:<schedulerId>/<taskGroupId>"]}]}`, []string{"queue:cancel-task", "assume:scheduler-id:S/*"}, true},
		{"nested, half", `{"AnyOf":["queue:cancel-task:<schedulerId>/<taskGroupId>/<taskId>",{"AllOf":["queue:cancel-task","assume:scheduler-id:<schedulerId>/<taskGroupId>"]}]}`, []string{"queue:cancel-task"}, false},
		{"if true", `{"if":"private","then":"secret:<taskId>"}`, nil, false},
		{"if false", `{"if":"public","then":"secret:<taskId>"}`, nil, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e, err := parseScopeExpr(json.RawMessage(tt.expr))
			if err != nil {
				t.Fatal(err)
			}
			x, err := e.expand(params)
			if err != nil {
				t.Fatal(err)
			}
			if got := x.satisfiedBy(tt.have); got != tt.want {
				t.Errorf("satisfied = %v, want %v (expanded %s)", got, tt.want, indentJSON(x))
			}
			if m := x.unsatisfied(tt.have); (m == nil) != tt.want {
				t.Errorf("unsatisfied = %s, want nil exactly when satisfied", indentJSON(m))
			}
			// The api.json form survives a round trip.
			b, _ := json.Marshal(e)
			again, err := parseScopeExpr(b)
			if err != nil {
				t.Fatal(err)
			}
			if b2, _ := json.Marshal(again); string(b2) != string(b) {
				t.Errorf("round trip %s → %s", b, b2)
			}
		})
	}
}

func TestScopeExpressionErrors(t *testing.T) {
	for _, bad := range []string{`{"AllOf":"x"}`, `{"Or":[]}`, `{"for":"a","in":"b"}`, `7`} {
		if _, err := parseScopeExpr(json.RawMessage(bad)); err == nil {
			t.Errorf("parseScopeExpr(%s) succeeded", bad)
		}
	}
	for _, tt := range []struct{ expr, why string }{
		{`"x:<missing>"`, "missing parameter"},
		{`{"AllOf":[{"for":"n","in":"taskId","each":"x:<n>"}]}`, "list parameter that is a string"},
		{`{"if":"taskId","then":"x"}`, "if on a string"},
		{`{"for":"n","in":"names","each":"x:<n>"}`, "for/each outside AllOf or AnyOf"},
	} {
		e, err := parseScopeExpr(json.RawMessage(tt.expr))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.expand(map[string]any{"taskId": "T", "names": []string{"a"}}); !errors.Is(err, errScopeParams) {
			t.Errorf("%s (%s): expand = %v, want errScopeParams", tt.expr, tt.why, err)
		}
	}
}

// Through HTTP: a client with too few scopes gets 403 InsufficientScopes
// with the real error body; authorizedScopes narrows a client's scopes
// (403 for what it no longer covers) and may not widen them (401).
func TestScopeEnforcement(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Clients = append(c.Clients,
			Client{ClientID: "reader", AccessToken: "reader-secret", Scopes: []string{"queue:status:*", "queue:get-task:*"}},
			Client{ClientID: "scheduler", AccessToken: "scheduler-secret", Scopes: []string{
				"queue:create-task:project:none", "queue:scheduler-id:-", "queue:create-task:low:" + testQueueID,
				"queue:cancel-task:-/*",
			}},
		)
		c.AnonymousScopes = []string{}
	})
	taskID, _ := e.createTask(e.taskDef(testQueueID))
	reader := &tc.Credentials{ClientID: "reader", AccessToken: "reader-secret"}
	sched := &tc.Credentials{ClientID: "scheduler", AccessToken: "scheduler-secret"}

	e.call("GET", "/task/"+taskID+"/status", reader, nil, 200, "queue/v1/task-status-response.json", nil)
	eb := e.callErr("POST", "/task/"+taskID+"/cancel", reader, nil, codeInsufficientScopes)
	if eb.RequestInfo.Method != "cancelTask" || !strings.Contains(eb.Message, "queue:cancel-task:-/"+taskID+"/"+taskID) {
		t.Errorf("InsufficientScopes body: %+v", eb)
	}
	// No anonymous scopes configured: even status needs credentials.
	e.callErr("GET", "/task/"+taskID+"/status", nil, nil, codeInsufficientScopes)

	narrowed := &tc.Credentials{ClientID: "reader", AccessToken: "reader-secret", AuthorizedScopes: []string{"queue:get-task:*"}}
	e.call("GET", "/task/"+taskID, narrowed, nil, 200, "queue/v1/task.json", nil)
	e.callErr("GET", "/task/"+taskID+"/status", narrowed, nil, codeInsufficientScopes)
	widened := &tc.Credentials{ClientID: "reader", AccessToken: "reader-secret", AuthorizedScopes: []string{"queue:cancel-task:*"}}
	e.callErr("GET", "/task/"+taskID, widened, nil, codeAuthenticationFailed)

	// createTask: priorities at or above the task's are accepted (low covers
	// lowest), a higher one is not; routes and task scopes need scopes too.
	low := e.taskDef(testQueueID)
	e.call("PUT", "/task/"+slugid.Nice(), sched, low, 200, "queue/v1/task-status-response.json", nil)
	high := e.taskDef(testQueueID)
	high["priority"] = "high"
	e.callErr("PUT", "/task/"+slugid.Nice(), sched, high, codeInsufficientScopes)
	routed := e.taskDef(testQueueID)
	routed["routes"] = []string{"index.x"}
	e.callErr("PUT", "/task/"+slugid.Nice(), sched, routed, codeInsufficientScopes)
	scoped := e.taskDef(testQueueID)
	scoped["scopes"] = []string{"secrets:get:x"}
	e.callErr("PUT", "/task/"+slugid.Nice(), sched, scoped, codeInsufficientScopes)
	e.call("POST", "/task/"+taskID+"/cancel", sched, nil, 200, "queue/v1/task-status-response.json", nil)
}
