package webui_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/localqueue"
	"go.dockerworker.dev/docker-worker/worker/localqueue/webui"
	"go.dockerworker.dev/docker-worker/worker/slugid"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

const (
	adminID    = "test-admin"
	adminToken = "test-admin-secret"
)

// env is a real embedded queue with the UI beside it, over HTTP.
type env struct {
	t      *testing.T
	root   string
	q      *localqueue.Queue
	client *tc.Client
}

func newEnv(t *testing.T, admin bool) *env {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	root := "http://" + srv.Listener.Addr().String()
	q, err := localqueue.New(localqueue.Config{
		RootURL: root, DataDir: t.TempDir(),
		Clients: []localqueue.Client{{ClientID: adminID, AccessToken: adminToken, Scopes: []string{"*"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	cfg := webui.Config{RootURL: root, Tasks: q}
	if admin {
		cfg.Admin = &tc.Credentials{ClientID: adminID, AccessToken: adminToken}
	}
	ui, err := webui.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/", q.Handler())
	mux.Handle("/", ui)
	srv.Config.Handler = mux
	srv.Start()
	t.Cleanup(srv.Close)
	return &env{t: t, root: root, q: q,
		client: tc.New(tc.Config{RootURL: root, Credentials: &tc.Credentials{ClientID: adminID, AccessToken: adminToken}})}
}

// do sends a request and returns the status, headers and body.
func (e *env) do(method, path string, body string, header map[string]string) (int, http.Header, []byte) {
	e.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(e.t.Context(), method, e.root+path, r)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return res.StatusCode, res.Header, b
}

var jsonHeader = map[string]string{"Content-Type": "application/json"}

// createTask creates a task of group with name, created at created.
func (e *env) createTask(group, name string, created time.Time) string {
	e.t.Helper()
	id := slugid.Nice()
	ts := func(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
	def, _ := json.Marshal(map[string]any{
		"provisionerId": "local", "workerType": "docker", "taskGroupId": group,
		"created": ts(created), "deadline": ts(time.Now().Add(time.Hour)), "expires": ts(time.Now().Add(24 * time.Hour)),
		"payload":  map[string]any{"image": "busybox", "command": []string{"true"}, "maxRunTime": 30},
		"metadata": map[string]string{"name": name, "description": "d", "owner": "o@example.com", "source": "https://example.com"},
	})
	if _, err := e.client.CreateTask(e.t.Context(), id, def); err != nil {
		e.t.Fatal(err)
	}
	return id
}

func TestPagesAreServedWithTheirAssetsAndSecurityHeaders(t *testing.T) {
	e := newEnv(t, false)
	for _, tc := range []struct{ path, script string }{
		{"/", "/ui/static/list.js"},
		{"/tasks/" + slugid.Nice(), "/ui/static/task.js"},
		{"/submit", "/ui/static/submit.js"},
		{"/shell/?v=1&socketUrl=ws%3A%2F%2Flocalhost%3A1%2Fx%2Fshell.sock&taskId=x&runId=0", "/ui/static/shell.js"},
	} {
		status, h, body := e.do("GET", tc.path, "", nil)
		if status != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
			t.Errorf("GET %s: %d %s, want 200 text/html", tc.path, status, h.Get("Content-Type"))
		}
		if !bytes.Contains(body, []byte(`src="`+tc.script+`"`)) || !bytes.Contains(body, []byte(`<meta name="dw-base" content="">`)) {
			t.Errorf("GET %s: page does not load %s from the root:\n%s", tc.path, tc.script, body)
		}
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self';") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("GET %s: Content-Security-Policy %q allows other scripts or framing", tc.path, csp)
		}
		if h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("GET %s: security headers %v", tc.path, h)
		}
		if h.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("GET %s: CORS header on a UI page", tc.path)
		}
	}
	for _, asset := range []string{"common.js", "list.js", "task.js", "submit.js", "shell.js", "app.css"} {
		status, h, body := e.do("GET", "/ui/static/"+asset, "", nil)
		want := "text/javascript"
		if strings.HasSuffix(asset, ".css") {
			want = "text/css"
		}
		if status != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), want) || len(body) == 0 {
			t.Errorf("GET /ui/static/%s: %d %s (%d bytes), want 200 %s", asset, status, h.Get("Content-Type"), len(body), want)
		}
	}
	for _, path := range []string{"/nowhere", "/ui/static/", "/ui/static/list.html", "/ui/static/vendor/", "/tasks/"} {
		if status, _, _ := e.do("GET", path, "", nil); status != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, status)
		}
	}
	// The queue API is still the queue's.
	if status, _, body := e.do("GET", "/api/queue/v1/ping", "", nil); status != http.StatusOK || !bytes.Contains(body, []byte(`"alive":true`)) {
		t.Errorf("queue ping: %d %s", status, body)
	}
}

func TestPagesUnderARootURLWithAPath(t *testing.T) {
	ui, err := webui.New(webui.Config{RootURL: "http://queue.example:8080/tc/", Tasks: nil})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	ui.ServeHTTP(rec, httptest.NewRequest("GET", "/submit", nil))
	body := rec.Body.String()
	if rec.Code != http.StatusOK || !strings.Contains(body, `<meta name="dw-base" content="/tc">`) || !strings.Contains(body, `src="/tc/ui/static/submit.js"`) {
		t.Errorf("GET /submit under /tc: %d\n%s", rec.Code, body)
	}
	if _, err := webui.New(webui.Config{RootURL: "not a url"}); err == nil {
		t.Error("New accepted a root URL without host")
	}
}

func TestConfigSaysWhetherTheServerSignsAndTheTerminalIsBuilt(t *testing.T) {
	_, statErr := os.Stat("assets/vendor/xterm.js")
	built := statErr == nil
	for _, admin := range []bool{false, true} {
		e := newEnv(t, admin)
		status, _, body := e.do("GET", "/ui/api/config", "", nil)
		var c struct {
			RootURL       string `json:"rootUrl"`
			AdminSigning  bool   `json:"adminSigning"`
			AdminClientID string `json:"adminClientId"`
			Terminal      bool   `json:"terminal"`
			ProvisionerID string `json:"provisionerId"`
			WorkerType    string `json:"workerType"`
		}
		if err := json.Unmarshal(body, &c); err != nil || status != http.StatusOK {
			t.Fatalf("config: %d %s (%v)", status, body, err)
		}
		want := c
		want.RootURL, want.AdminSigning, want.Terminal = e.root, admin, built
		want.ProvisionerID, want.WorkerType = webui.DefaultProvisionerID, webui.DefaultWorkerType
		want.AdminClientID = ""
		if admin {
			want.AdminClientID = adminID
		}
		if c != want {
			t.Errorf("admin %v: config %+v, want %+v", admin, c, want)
		}
	}
}

type listed struct {
	Tasks []localqueue.TaskSummary `json:"tasks"`
	Total int                      `json:"total"`
}

func (e *env) list(query string) (int, listed) {
	e.t.Helper()
	status, _, body := e.do("GET", "/ui/api/tasks"+query, "", nil)
	var l listed
	if status == http.StatusOK {
		if err := json.Unmarshal(body, &l); err != nil {
			e.t.Fatalf("list%s: %v: %s", query, err, body)
		}
	}
	return status, l
}

func ids(l listed) []string {
	var out []string
	for _, s := range l.Tasks {
		out = append(out, s.TaskID)
	}
	return out
}

func TestTaskListIsNewestFirstAndFiltered(t *testing.T) {
	e := newEnv(t, false)
	groupA, groupB := slugid.Nice(), slugid.Nice()
	now := time.Now()
	oldest := e.createTask(groupA, "oldest", now.Add(-3*time.Minute))
	newest := e.createTask(groupB, "newest <b>", now.Add(-1*time.Minute))
	middle := e.createTask(groupA, "middle", now.Add(-2*time.Minute))
	if _, err := e.client.CancelTask(t.Context(), middle); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		query string
		want  []string
		total int
	}{
		{"", []string{newest, middle, oldest}, 3},
		{"?state=exception", []string{middle}, 1},
		{"?state=pending", []string{newest, oldest}, 2},
		{"?state=running", nil, 0},
		{"?taskGroupId=" + groupA, []string{middle, oldest}, 2},
		{"?taskGroupId=" + groupA + "&state=pending", []string{oldest}, 1},
		{"?limit=1", []string{newest}, 3},
	} {
		status, l := e.list(tc.query)
		if status != http.StatusOK || !slices.Equal(ids(l), tc.want) || l.Total != tc.total {
			t.Errorf("list%s: %d %v total %d, want %v total %d", tc.query, status, ids(l), l.Total, tc.want, tc.total)
		}
	}
	_, l := e.list("?taskGroupId=" + groupB)
	if len(l.Tasks) != 1 || l.Tasks[0].Name != "newest <b>" || l.Tasks[0].State != "pending" || l.Tasks[0].TaskQueueID != "local/docker" || l.Tasks[0].Runs != 1 {
		t.Errorf("summary %+v", l.Tasks)
	}
	_, l = e.list("?state=exception")
	if l.Tasks[0].ReasonResolved != "canceled" {
		t.Errorf("cancelled task's reasonResolved %q, want canceled", l.Tasks[0].ReasonResolved)
	}
	for _, q := range []string{"?state=done", "?taskGroupId=nope", "?limit=0", "?limit=x", "?limit=100000"} {
		if status, _ := e.list(q); status != http.StatusBadRequest {
			t.Errorf("list%s: %d, want 400", q, status)
		}
	}
}

type validated struct {
	TaskID   string         `json:"taskId"`
	Task     map[string]any `json:"task"`
	Problems []struct {
		Path    string `json:"path"`
		Message string `json:"message"`
	} `json:"problems"`
}

func (e *env) validate(text, name string) validated {
	e.t.Helper()
	req, _ := json.Marshal(map[string]string{"text": text, "name": name})
	status, _, body := e.do("POST", "/ui/api/validate", string(req), jsonHeader)
	var v validated
	if err := json.Unmarshal(body, &v); err != nil || status != http.StatusOK {
		e.t.Fatalf("validate: %d %s (%v)", status, body, err)
	}
	return v
}

func TestValidateCompletesADocumentTheQueueAccepts(t *testing.T) {
	e := newEnv(t, false)
	for _, tc := range []struct {
		name, text, file string
		check            func(v validated) string
	}{
		{"YAML payload", "image: busybox\ncommand: [sh, -c, 'echo hi']\nmaxRunTime: 60\n", "hello.yml", func(v validated) string {
			meta := v.Task["metadata"].(map[string]any)
			if v.Task["provisionerId"] != "local" || v.Task["workerType"] != "docker" || meta["name"] != "hello.yml" {
				return "pool or name not filled in"
			}
			return ""
		}},
		{"JSON task definition", `{"taskId":"` + fixedID + `","taskQueueId":"local/other","metadata":{"name":"mine","description":"d","owner":"o@example.com","source":"https://example.com"},` +
			`"payload":{"image":"busybox","command":["true"],"maxRunTime":5}}`, "", func(v validated) string {
			if v.TaskID != fixedID || v.Task["taskId"] != nil || v.Task["provisionerId"] != nil || v.Task["taskQueueId"] != "local/other" {
				return "taskId or taskQueueId not kept as given"
			}
			if v.Task["metadata"].(map[string]any)["name"] != "mine" {
				return "metadata replaced"
			}
			return ""
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := e.validate(tc.text, tc.file)
			if len(v.Problems) != 0 {
				t.Fatalf("problems: %+v", v.Problems)
			}
			if msg := tc.check(v); msg != "" {
				t.Errorf("%s: %+v", msg, v.Task)
			}
			for _, k := range []string{"created", "deadline", "expires"} {
				if _, ok := v.Task[k].(string); !ok {
					t.Errorf("%s not filled in", k)
				}
			}
			def, _ := json.Marshal(v.Task)
			if _, err := e.client.CreateTask(t.Context(), v.TaskID, def); err != nil {
				t.Errorf("the queue refused the completed task: %v", err)
			}
		})
	}
}

const fixedID = "fQ3dmVwTQTyePpK3-ZsxWA"

func TestValidateReportsEveryProblemByPath(t *testing.T) {
	e := newEnv(t, false)
	for _, tc := range []struct {
		name, text string
		want       []string // paths
	}{
		{"schema errors", "image: busybox\ncommand: [true]\nmaxRunTime: soon\n", []string{"payload.command[0]", "payload.maxRunTime"}},
		{"missing image", "command: [echo]\nmaxRunTime: 5\n", []string{"payload"}},
		{"bad taskId", `{"taskId":"nope","payload":{"image":"busybox","maxRunTime":5}}`, []string{"taskId"}},
		{"empty", "  \n", []string{"task"}},
		{"not YAML", "image: [unclosed\n", []string{"task"}},
		{"not an object", "- a\n- b\n", []string{"task"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := e.validate(tc.text, "")
			var paths []string
			for _, p := range v.Problems {
				if p.Message == "" {
					t.Errorf("problem at %s without message", p.Path)
				}
				paths = append(paths, p.Path)
			}
			if !slices.Equal(paths, tc.want) {
				t.Errorf("problem paths %v, want %v (%+v)", paths, tc.want, v.Problems)
			}
			if v.Task != nil {
				t.Errorf("a task came back with problems: %v", v.Task)
			}
		})
	}
}

func TestStateChangingEndpointsRefuseOtherOrigins(t *testing.T) {
	e := newEnv(t, true)
	body := `{"text":"image: busybox\nmaxRunTime: 5\n"}`
	for _, path := range []string{"/ui/api/validate", "/ui/api/sign"} {
		for _, tc := range []struct {
			name   string
			header map[string]string
			want   int
		}{
			{"foreign Origin", map[string]string{"Content-Type": "application/json", "Origin": "http://evil.example"}, http.StatusForbidden},
			{"cross-site fetch", map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
			{"same-site, other origin", map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "same-site"}, http.StatusForbidden},
			{"form post", map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Origin": e.root}, http.StatusUnsupportedMediaType},
		} {
			status, h, _ := e.do("POST", path, body, tc.header)
			if status != tc.want {
				t.Errorf("POST %s, %s: %d, want %d", path, tc.name, status, tc.want)
			}
			if h.Get("Access-Control-Allow-Origin") != "" {
				t.Errorf("POST %s: CORS header", path)
			}
		}
	}
	status, _, _ := e.do("POST", "/ui/api/validate", body, map[string]string{"Content-Type": "application/json", "Origin": e.root, "Sec-Fetch-Site": "same-origin"})
	if status != http.StatusOK {
		t.Errorf("same-origin validate: %d, want 200", status)
	}
	if status, _, _ := e.do("GET", "/ui/api/validate", "", nil); status != http.StatusMethodNotAllowed {
		t.Errorf("GET validate: %d, want 405", status)
	}
	if status, _, _ := e.do("POST", "/ui/api/validate", `{"text":"x","extra":1}`, jsonHeader); status != http.StatusBadRequest {
		t.Errorf("validate with an unknown field: %d, want 400", status)
	}
}

type signed struct {
	Authorization string `json:"authorization"`
	URL           string `json:"url"`
	Message       string `json:"message"`
}

func (e *env) sign(method, url string, bewit bool) (int, signed) {
	e.t.Helper()
	req, _ := json.Marshal(map[string]any{"method": method, "url": url, "bewit": bewit})
	status, _, body := e.do("POST", "/ui/api/sign", string(req), jsonHeader)
	var s signed
	if err := json.Unmarshal(body, &s); err != nil {
		e.t.Fatalf("sign: %d %s", status, body)
	}
	return status, s
}

// currentClient asks the auth service who the request is (by header or
// by bewit).
func (e *env) currentClient(url, authorization string) string {
	e.t.Helper()
	h := map[string]string{}
	if authorization != "" {
		h["Authorization"] = authorization
	}
	status, _, body := e.do("GET", strings.TrimPrefix(url, e.root), "", h)
	var r struct {
		ClientID string   `json:"clientId"`
		Scopes   []string `json:"scopes"`
	}
	if err := json.Unmarshal(body, &r); err != nil || status != http.StatusOK {
		e.t.Fatalf("currentScopes: %d %s", status, body)
	}
	return strings.Join(r.Scopes, ",")
}

func TestSignEndpointSignsForTheAdminOnlyWhenEnabled(t *testing.T) {
	off := newEnv(t, false)
	if status, s := off.sign("GET", off.root+"/api/auth/v1/scopes/current", false); status != http.StatusNotFound || s.Authorization != "" {
		t.Errorf("sign without admin: %d %+v, want 404", status, s)
	}

	e := newEnv(t, true)
	current := e.root + "/api/auth/v1/scopes/current"
	if got := e.currentClient(current, ""); got == "*" {
		t.Fatal("anonymous requests already have scope *: the test proves nothing")
	}
	status, s := e.sign("get", current, false)
	if status != http.StatusOK || !strings.HasPrefix(s.Authorization, `Hawk id="`+adminID+`"`) {
		t.Fatalf("sign: %d %+v", status, s)
	}
	if got := e.currentClient(current, s.Authorization); got != "*" {
		t.Errorf("scopes with the signed header: %s, want *", got)
	}
	status, s = e.sign("", current, true)
	if status != http.StatusOK || !strings.HasPrefix(s.URL, current+"?bewit=") {
		t.Fatalf("sign bewit: %d %+v", status, s)
	}
	if got := e.currentClient(s.URL, ""); got != "*" {
		t.Errorf("scopes with the signed URL: %s, want *", got)
	}
	// An action signed by the endpoint: createTask.
	id := slugid.Nice()
	v := e.validate("image: busybox\nmaxRunTime: 5\n", "")
	def, _ := json.Marshal(v.Task)
	createURL := e.root + "/api/queue/v1/task/" + id
	_, s = e.sign("PUT", createURL, false)
	status, _, body := e.do("PUT", "/api/queue/v1/task/"+id, string(def), map[string]string{"Authorization": s.Authorization, "Content-Type": "application/json"})
	if status != http.StatusOK {
		t.Errorf("createTask with a signed header: %d %s", status, body)
	}

	// DNS rebinding: a page of another name that resolves here.
	rebound := strings.Replace(current, "127.0.0.1", "rebound.example", 1)
	req, _ := json.Marshal(map[string]any{"method": "GET", "url": rebound})
	if status, _, body := e.do("POST", "/ui/api/sign", string(req), map[string]string{"Content-Type": "application/json",
		"Host": strings.TrimPrefix(strings.Replace(e.root, "127.0.0.1", "rebound.example", 1), "http://")}); status != http.StatusForbidden {
		t.Errorf("sign for another Host: %d %s, want 403", status, body)
	}
	for _, tc := range []struct{ name, method, url string }{
		{"another host", "GET", "http://other.example/api/auth/v1/scopes/current"},
		{"not the API", "GET", e.root + "/ui/api/tasks"},
		{"odd method", "PATCH", current},
		{"not http", "GET", "ftp://" + strings.TrimPrefix(e.root, "http://") + "/api/x"},
	} {
		if status, s := e.sign(tc.method, tc.url, false); status != http.StatusBadRequest || s.Authorization != "" {
			t.Errorf("sign %s: %d %+v, want 400", tc.name, status, s)
		}
	}
}
