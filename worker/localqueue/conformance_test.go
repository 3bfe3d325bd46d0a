package localqueue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/internal/apischema"
	"go.dockerworker.dev/docker-worker/worker/slugid"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// The conformance suite checks the queue against the published API
// reference: the route table against api.json (methods, paths, scope
// expressions), and every request and answer of a scenario that drives
// every route, through the worker's own tc client and with raw HTTP,
// against the request and response schemas.

func loadAPI(t *testing.T) *apischema.API {
	t.Helper()
	apischema.Open(t) // skips or fails, as for the schemas
	dir, err := apischema.Dir()
	if err != nil {
		t.Fatal(err)
	}
	api, err := apischema.LoadAPI(dir, services...)
	if err != nil {
		t.Fatal(err)
	}
	return api
}

// canonicalScopes re-encodes a scope expression for comparison.
func canonicalScopes(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	if len(raw) == 0 {
		return ""
	}
	e, err := parseScopeExpr(raw)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(e)
	return string(b)
}

func TestRouteTableMatchesAPIReference(t *testing.T) {
	api := loadAPI(t)
	for _, rt := range routeTable() {
		t.Run(rt.service+"."+rt.name, func(t *testing.T) {
			e := api.Lookup(rt.service, rt.name)
			if e == nil {
				t.Fatalf("no %s method %s in api.json", rt.service, rt.name)
			}
			parts := make([]string, len(rt.pattern))
			for i, p := range rt.pattern {
				if p[0] == ':' || p[0] == '*' || p[0] == '?' {
					p = "<" + p[1:] + ">"
				}
				parts[i] = p
			}
			if got := "/" + strings.Join(parts, "/"); rt.method != e.Method || got != e.Route {
				t.Errorf("route %s %s, api.json says %s %s", rt.method, got, e.Method, e.Route)
			}
			var ours json.RawMessage
			if rt.scopes != nil {
				ours, _ = json.Marshal(rt.scopes)
			}
			if got, want := canonicalScopes(t, ours), canonicalScopes(t, e.Scopes); got != want {
				t.Errorf("scopes %s, api.json says %s", got, want)
			}
		})
	}
}

// recorder is an http.RoundTripper that checks every queue and object
// service exchange against the API reference: the request body against
// the method's input schema, the answer against its output schema (or the
// error body shape), and counts the methods seen.
type recorder struct {
	t       *testing.T
	api     *apischema.API
	schemas *apischema.Set
	root    string
	base    http.RoundTripper

	mu   sync.Mutex
	seen map[string]int // service.method → calls
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		reqBody = b
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	resp, err := r.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	respBody, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(respBody))

	rest, ok := strings.CutPrefix(req.URL.EscapedPath(), "/api/")
	if !strings.HasPrefix(req.URL.String(), r.root) || !ok {
		return resp, nil // storage URLs
	}
	svc, path, _ := strings.Cut(rest, "/v1")
	if svc == serviceQueue && strings.HasPrefix(path, "/"+blobPrefix+"/") {
		return resp, nil
	}
	e := r.api.Match(svc, req.Method, path)
	if e == nil && strings.HasSuffix(path, "/") {
		// An empty last parameter (the index's listings of the top-level
		// namespace), which the reference's route patterns do not allow for.
		e = r.api.Match(svc, req.Method, path+"_")
	}
	if e == nil {
		r.t.Errorf("%s %s matches no method of api.json", req.Method, req.URL.Path)
		return resp, nil
	}
	r.mu.Lock()
	r.seen[svc+"."+e.Name]++
	r.mu.Unlock()
	if e.Input != "" && len(reqBody) > 0 {
		if err := r.schemas.Validate(e.Input, reqBody); err != nil {
			r.t.Errorf("request of %s: %v\nbody: %s", e.Name, err, reqBody)
		}
	}
	switch st := resp.StatusCode; {
	case st == http.StatusFailedDependency:
		var m map[string]string
		if json.Unmarshal(respBody, &m) != nil || m["reason"] == "" || len(m) != 2 {
			r.t.Errorf("424 of %s: body %s, want {reason, message}", e.Name, respBody)
		}
	case st >= 400:
		checkErrorBody(r.t, respBody, "")
		if req.Method != http.MethodGet || st >= 500 {
			r.t.Logf("%s answered %d: %s", e.Name, st, respBody)
		}
	case st == http.StatusNoContent:
	case e.Output != "" && (st < 300 || st == http.StatusSeeOther):
		if err := r.schemas.Validate(e.Output, respBody); err != nil {
			r.t.Errorf("answer of %s: %v\nbody: %s", e.Name, err, respBody)
		}
	}
	return resp, nil
}

func (r *recorder) count(svc, name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[svc+"."+name]
}

// confEnv is the queue with clients whose traffic the recorder checks.
type confEnv struct {
	*env
	rec    *recorder
	admin  *tc.Client
	nobody *tc.Client // authenticated, no scopes
	group  string     // taskGroupId of createDef
}

var nobodyCreds = tc.Credentials{ClientID: "nobody", AccessToken: "nobody-secret"}

func newConfEnv(t *testing.T, mods ...func(*Config)) *confEnv {
	t.Helper()
	api := loadAPI(t)
	e := newEnv(t, func(c *Config) {
		c.Clients = append(c.Clients, Client{ClientID: nobodyCreds.ClientID, AccessToken: nobodyCreds.AccessToken, Scopes: []string{}})
		for _, mod := range mods {
			mod(c)
		}
	})
	rec := &recorder{t: t, api: api, schemas: apischema.Open(t), root: e.root, base: &http.Transport{}, seen: map[string]int{}}
	hc := &http.Client{Transport: rec}
	mk := func(c *tc.Credentials) *tc.Client {
		return tc.New(tc.Config{RootURL: e.root, Credentials: c, HTTPClient: hc, Retries: -1, Now: e.now})
	}
	return &confEnv{env: e, rec: rec, admin: mk(&adminCreds), nobody: mk(&nobodyCreds)}
}

// wantCode checks err is an API error with the code and its status.
func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s succeeded, want %s", what, code)
	}
	apiErr, ok := errors.AsType[*tc.APIError](err)
	if !ok || apiErr.Code != code || apiErr.StatusCode != codeStatus[code] {
		t.Fatalf("%s = %v, want %s (%d)", what, err, code, codeStatus[code])
	}
}

func (c *confEnv) createDef(mod func(map[string]any)) json.RawMessage {
	def := c.taskDef(testQueueID)
	def["taskGroupId"] = c.group
	if mod != nil {
		mod(def)
	}
	b, _ := json.Marshal(def)
	return b
}

// TestConformance drives every route of the queue and the object service
// with the tc client, checking every exchange against the reference.
func TestConformance(t *testing.T) {
	c := newConfEnv(t)
	ctx := t.Context()
	c.group = slugid.Nice()
	exp := c.now().Add(24 * time.Hour)

	// Ping on both services.
	for _, svc := range []string{serviceQueue, serviceObject} {
		if err := c.admin.Request(ctx, svc, "GET", "/ping", nil, nil, nil); err != nil {
			t.Fatal(err)
		}
	}

	// createTask: new, identical again (idempotent), different (conflict).
	a := slugid.Nice()
	defA := c.createDef(func(d map[string]any) {
		d["routes"] = []string{"conformance.a"}
		d["scopes"] = []string{"secrets:get:x"}
	})
	if _, err := c.admin.CreateTask(ctx, a, defA); err != nil {
		t.Fatal(err)
	}
	if _, err := c.admin.CreateTask(ctx, a, defA); err != nil {
		t.Fatalf("identical re-create: %v", err)
	}
	_, err := c.admin.CreateTask(ctx, a, c.createDef(func(d map[string]any) { d["priority"] = "high" }))
	wantCode(t, "different re-create", err, codeRequestConflict)
	_, err = c.nobody.CreateTask(ctx, slugid.Nice(), defA)
	wantCode(t, "createTask without scopes", err, codeInsufficientScopes)
	_, err = c.admin.CreateTask(ctx, slugid.Nice(), c.createDef(func(d map[string]any) { d["dependencies"] = []string{slugid.Nice()} }))
	wantCode(t, "createTask with a missing dependency", err, codeInputError)

	// Dependencies: b waits for a (all-completed), s depends on itself.
	b := slugid.Nice()
	if _, err := c.admin.CreateTask(ctx, b, c.createDef(func(d map[string]any) { d["dependencies"] = []string{a} })); err != nil {
		t.Fatal(err)
	}
	s := slugid.Nice()
	resp, err := c.admin.CreateTask(ctx, s, c.createDef(func(d map[string]any) { d["dependencies"] = []string{s} }))
	if err != nil || resp.Status.State != tc.StateUnscheduled {
		t.Fatalf("self-dependent task: %+v, %v", resp, err)
	}
	if resp, err = c.admin.ScheduleTask(ctx, s); err != nil || resp.Status.State != tc.StatePending {
		t.Fatalf("scheduleTask: %+v, %v", resp, err)
	}
	if err := c.admin.Request(ctx, serviceQueue, "GET", "/task/"+a+"/dependents", nil, nil, nil); err != nil {
		t.Fatal(err)
	}

	// Reads.
	if _, err := c.admin.Task(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := c.admin.Status(ctx, b); err != nil {
		t.Fatal(err)
	}
	_, err = c.admin.Status(ctx, slugid.Nice())
	wantCode(t, "status of an unknown task", err, codeResourceNotFound)
	ids := map[string]any{"taskIds": []string{a, b, slugid.Nice()}}
	if err := c.admin.Request(ctx, serviceQueue, "POST", "/tasks", nil, ids, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.admin.Request(ctx, serviceQueue, "POST", "/tasks/status", nil, ids, nil); err != nil {
		t.Fatal(err)
	}
	err = c.nobody.Request(ctx, serviceQueue, "POST", "/tasks/status", nil, ids, nil)
	wantCode(t, "statuses without scopes", err, codeInsufficientScopes)
	if _, err := c.admin.ListTaskGroup(ctx, c.group, "", 1); err != nil {
		t.Fatal(err)
	}
	if err := c.admin.Request(ctx, serviceQueue, "GET", "/task-group/"+c.group, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	qid := tc.PathEscape(testQueueID)
	var counts struct{ PendingTasks, ClaimedTasks int }
	if err := c.admin.Request(ctx, serviceQueue, "GET", "/pending/"+qid, nil, nil, &counts); err != nil || counts.PendingTasks != 2 {
		t.Fatalf("pendingTasks = %+v, %v (want 2: a and s)", counts, err)
	}
	if err := c.admin.Request(ctx, serviceQueue, "GET", "/task-queues/"+qid+"/counts", nil, nil, nil); err != nil {
		t.Fatal(err)
	}

	// The worker's side: claim a (the oldest), reclaim, artifacts of every type.
	_, err = c.nobody.ClaimWork(ctx, testQueueID, tc.ClaimWorkRequest{Tasks: 1, WorkerGroup: "wg", WorkerID: "w1"})
	wantCode(t, "claimWork without scopes", err, codeInsufficientScopes)
	claims, err := c.admin.ClaimWork(ctx, testQueueID, tc.ClaimWorkRequest{Tasks: 1, WorkerGroup: "wg", WorkerID: "w1"})
	if err != nil || len(claims.Tasks) != 1 || claims.Tasks[0].Status.TaskID != a {
		t.Fatalf("claimWork = %+v, %v", claims, err)
	}
	run := c.admin.WithCredentials(claims.Tasks[0].Credentials)
	rec, err := run.ReclaimTask(ctx, a, 0)
	if err != nil {
		t.Fatal(err)
	}
	run = c.admin.WithCredentials(rec.Credentials)
	_, err = run.ReclaimTask(ctx, s, 0)
	wantCode(t, "reclaim of another task with a run's credentials", err, codeInsufficientScopes)

	put := func(name, body, contentType string) {
		t.Helper()
		art, err := run.CreateArtifact(ctx, a, 0, name, tc.S3Artifact(exp, contentType))
		if err != nil {
			t.Fatal(err)
		}
		if err := run.PutArtifact(ctx, art.PutURL, func(context.Context) (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }, int64(len(body)), contentType, ""); err != nil {
			t.Fatal(err)
		}
	}
	put("public/logs/live_backing.log", "the log\n", "text/plain; charset=utf-8")
	put("private/secret.txt", "private bytes", "text/plain")
	for name, req := range map[string]tc.ArtifactRequest{
		"public/logs/live.log": tc.LinkArtifact(exp, "public/logs/live_backing.log"),
		"public/ref":           tc.ReferenceArtifact(exp, c.root+"/api/queue/v1/ping", "application/json"),
		"public/missing":       tc.ErrorArtifact(exp, tc.ArtifactFileMissing, "no such file"),
	} {
		if _, err := run.CreateArtifact(ctx, a, 0, name, req); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
	}
	_, err = run.CreateArtifact(ctx, a, 0, "public/ref", tc.ErrorArtifact(exp, tc.ArtifactFileMissing, "x"))
	wantCode(t, "re-create with another storage type", err, codeRequestConflict)

	// An object artifact, through the object service on the same rootUrl.
	var obj struct {
		Name, ProjectID, UploadID string
		Credentials               tc.Credentials
	}
	objReq := map[string]any{"storageType": "object", "expires": exp.Format(time.RFC3339), "contentType": "text/plain"}
	if err := run.Request(ctx, serviceQueue, "POST", runPath(a, 0, "/artifacts/"+tc.PathEscape("public/obj.txt")), nil, objReq, &obj); err != nil {
		t.Fatal(err)
	}
	finish := map[string]any{"uploadId": obj.UploadID}
	err = run.Request(ctx, serviceQueue, "PUT", runPath(a, 0, "/artifacts/"+tc.PathEscape("public/obj.txt")), nil, finish, nil)
	wantCode(t, "finishArtifact before the upload", err, codeInputError)
	uploader := c.admin.WithCredentials(obj.Credentials)
	objPath := "/upload/" + tc.PathEscape(obj.Name)
	upload := map[string]any{
		"projectId": obj.ProjectID, "uploadId": obj.UploadID, "expires": exp.Format(time.RFC3339),
		"proposedUploadMethods": map[string]any{"putUrl": map[string]any{"contentType": "text/plain", "contentLength": 9}},
	}
	var up struct {
		UploadMethod struct {
			PutURL struct {
				URL     string
				Headers map[string]string
			} `json:"putUrl"`
		} `json:"uploadMethod"`
	}
	if err := uploader.Request(ctx, serviceObject, "PUT", objPath, nil, upload, &up); err != nil {
		t.Fatal(err)
	}
	err = uploader.Request(ctx, serviceObject, "PUT", "/upload/"+tc.PathEscape("t/other/name"), nil, upload, nil)
	wantCode(t, "createUpload of another object with an artifact's upload credentials", err, codeInsufficientScopes)
	if err := run.PutArtifact(ctx, up.UploadMethod.PutURL.URL, func(context.Context) (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("obj bytes")), nil }, 9, "text/plain", ""); err != nil {
		t.Fatal(err)
	}
	fin := map[string]any{"projectId": obj.ProjectID, "uploadId": obj.UploadID, "hashes": map[string]string{}}
	if err := uploader.Request(ctx, serviceObject, "POST", "/finish-upload/"+tc.PathEscape(obj.Name), nil, fin, nil); err != nil {
		t.Fatal(err)
	}
	if err := run.Request(ctx, serviceQueue, "PUT", runPath(a, 0, "/artifacts/"+tc.PathEscape("public/obj.txt")), nil, finish, nil); err != nil {
		t.Fatal(err)
	}
	// A small object uploaded inline by the admin.
	inlineName := "dw-test/inline-" + slugid.Nice()
	inline := map[string]any{
		"projectId": "none", "uploadId": slugid.Nice(), "expires": exp.Format(time.RFC3339),
		"proposedUploadMethods": map[string]any{"dataInline": map[string]any{"contentType": "text/plain", "objectData": "aW5saW5l"}},
	}
	if err := c.admin.Request(ctx, serviceObject, "PUT", "/upload/"+tc.PathEscape(inlineName), nil, inline, nil); err != nil {
		t.Fatal(err)
	}
	fin = map[string]any{"projectId": "none", "uploadId": inline["uploadId"]}
	if err := c.admin.Request(ctx, serviceObject, "POST", "/finish-upload/"+tc.PathEscape(inlineName), nil, fin, nil); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"simple", "getUrl"} {
		var dl struct{ Method, URL string }
		if err := c.admin.Request(ctx, serviceObject, "PUT", "/start-download/"+tc.PathEscape(inlineName), nil,
			map[string]any{"acceptDownloadMethods": map[string]bool{m: true}}, &dl); err != nil || dl.Method != m {
			t.Fatalf("startDownload %s = %+v, %v", m, dl, err)
		}
	}
	if err := c.admin.Request(ctx, serviceObject, "GET", "/metadata/"+tc.PathEscape(inlineName), nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if _, err := c.admin.Download(ctx, c.admin.ServiceURL(serviceObject, "/download/"+tc.PathEscape(inlineName)), &got); err != nil || got.String() != "inline" {
		t.Fatalf("object download = %q, %v", got.String(), err)
	}

	// Reading artifacts: redirects (links followed), content, info, lists.
	for _, tt := range []struct{ url, want string }{
		{c.admin.ArtifactURL(a, 0, "public/logs/live.log"), "the log\n"},
		{c.admin.LatestArtifactURL(a, "public/logs/live_backing.log"), "the log\n"},
		{c.admin.ArtifactURL(a, 0, "public/obj.txt"), "obj bytes"},
		{c.admin.ArtifactURL(a, 0, "private/secret.txt"), "private bytes"},
	} {
		got.Reset()
		if _, err := c.admin.Download(ctx, tt.url, &got); err != nil || got.String() != tt.want {
			t.Fatalf("download %s = %q, %v", tt.url, got.String(), err)
		}
	}
	anon := tc.New(tc.Config{RootURL: c.root, HTTPClient: &http.Client{Transport: c.rec}, Retries: -1})
	if _, err := anon.Download(ctx, anon.ArtifactURL(a, 0, "private/secret.txt"), io.Discard); err == nil {
		t.Fatal("anonymous download of a private artifact succeeded")
	}
	_, err = anon.Download(ctx, anon.ArtifactURL(a, 0, "public/missing"), io.Discard)
	if tc.StatusCode(err) != http.StatusFailedDependency {
		t.Fatalf("error artifact = %v, want 424", err)
	}
	for _, p := range []string{
		runPath(a, 0, "/artifact-content/"+tc.PathEscape("public/logs/live.log")),
		"/task/" + a + "/artifact-content/" + tc.PathEscape("public/obj.txt"),
		runPath(a, 0, "/artifact-content/"+tc.PathEscape("public/missing")),
		runPath(a, 0, "/artifact-info/"+tc.PathEscape("public/logs/live.log")),
		"/task/" + a + "/artifact-info/" + tc.PathEscape("public/ref"),
	} {
		if err := c.admin.Request(ctx, serviceQueue, "GET", p, nil, nil, nil); err != nil {
			t.Fatalf("GET %s: %v", p, err)
		}
	}
	list, err := c.admin.ListArtifacts(ctx, a, 0, "")
	if err != nil || len(list.Artifacts) != 6 {
		t.Fatalf("listArtifacts = %+v, %v (want 6)", list, err)
	}
	if _, err := c.admin.ListLatestArtifacts(ctx, a, ""); err != nil {
		t.Fatal(err)
	}

	// Resolutions, dependency resolution, cancel and rerun.
	if st, err := run.ReportCompleted(ctx, a, 0); err != nil || st.Status.State != tc.StateCompleted {
		t.Fatalf("reportCompleted = %+v, %v", st, err)
	}
	if st, _ := c.admin.Status(ctx, b); st.Status.State != tc.StatePending {
		t.Fatalf("b (depends on a) is %s after a completed, want pending", st.Status.State)
	}
	claims, err = c.admin.ClaimWork(ctx, testQueueID, tc.ClaimWorkRequest{Tasks: 2, WorkerGroup: "wg", WorkerID: "w1"})
	if err != nil || len(claims.Tasks) != 2 {
		t.Fatalf("claimWork = %+v, %v", claims, err)
	}
	for _, cl := range claims.Tasks {
		r := c.admin.WithCredentials(cl.Credentials)
		if cl.Status.TaskID == b {
			_, err = r.ReportFailed(ctx, b, 0)
		} else {
			_, err = r.ReportException(ctx, cl.Status.TaskID, 0, tc.ReasonWorkerShutdown)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if st, _ := c.admin.Status(ctx, s); st.Status.State != tc.StatePending || st.Status.Runs[1].ReasonCreated != reasonRetry {
		t.Fatalf("s after worker-shutdown: %+v", st.Status)
	}
	if _, err := c.admin.CancelTask(ctx, s); err != nil {
		t.Fatal(err)
	}
	_, err = c.nobody.CancelTask(ctx, s)
	wantCode(t, "cancelTask without scopes", err, codeInsufficientScopes)
	if st, err := c.admin.RerunTask(ctx, b); err != nil || st.Status.State != tc.StatePending || st.Status.Runs[1].ReasonCreated != reasonRerun {
		t.Fatalf("rerunTask = %+v, %v", st, err)
	}

	c.checkExercised(serviceQueue, serviceObject)
}

// checkExercised fails the test for each route of the services that no
// request reached.
func (c *confEnv) checkExercised(svcs ...string) {
	c.t.Helper()
	for _, rt := range routeTable() {
		if slices.Contains(svcs, rt.service) && c.rec.count(rt.service, rt.name) == 0 {
			c.t.Errorf("%s.%s was not exercised", rt.service, rt.name)
		}
	}
}

// Raw HTTP: for each route, requests that must fail with a given code,
// each answered with a Taskcluster error body.
func TestConformanceErrors(t *testing.T) {
	c := newConfEnv(t)
	c.group = slugid.Nice()
	claim := c.claimOne(nil)
	taskID := claim.Status.TaskID
	runCreds := credsOf(claim.Credentials)
	unknown := slugid.Nice()
	nobody := &nobodyCreds
	wrongKey := &tc.Credentials{ClientID: adminCreds.ClientID, AccessToken: "wrong"}
	exp := formatTime(c.now().Add(time.Hour))
	s3 := map[string]any{"storageType": "s3", "expires": exp, "contentType": "text/plain"}
	art := func(run int, name string) string { return runPath(taskID, run, "/artifacts/"+url.PathEscape(name)) }
	for _, tt := range []struct {
		name, method, path string
		creds              *tc.Credentials
		body               any
		code               string
	}{
		{"task: unknown", "GET", "/task/" + unknown, nil, nil, codeResourceNotFound},
		{"task: bad taskId", "GET", "/task/nope", nil, nil, codeInvalidRequestArguments},
		{"task: wrong key", "GET", "/task/" + taskID, wrongKey, nil, codeAuthenticationFailed},
		{"task: no scopes", "GET", "/task/" + taskID, nobody, nil, codeInsufficientScopes},
		{"status: no scopes", "GET", "/task/" + taskID + "/status", nobody, nil, codeInsufficientScopes},
		{"tasks: not JSON", "POST", "/tasks", &adminCreds, []byte("{"), codeMalformedPayload},
		{"statuses: bad shape", "POST", "/tasks/status", &adminCreds, map[string]any{"taskIds": 1}, codeInputValidationError},
		{"listTaskGroup: unknown", "GET", "/task-group/" + unknown + "/list", nil, nil, codeResourceNotFound},
		{"getTaskGroup: no scopes", "GET", "/task-group/" + c.group, nobody, nil, codeInsufficientScopes},
		{"listDependentTasks: unknown", "GET", "/task/" + unknown + "/dependents", nil, nil, codeResourceNotFound},
		{"createTask: invalid", "PUT", "/task/" + unknown, &adminCreds, map[string]any{"payload": 1}, codeInputValidationError},
		{"createTask: anonymous", "PUT", "/task/" + unknown, nil, c.taskDef(testQueueID), codeInsufficientScopes},
		{"scheduleTask: unknown", "POST", "/task/" + unknown + "/schedule", &adminCreds, nil, codeResourceNotFound},
		{"scheduleTask: no scopes", "POST", "/task/" + taskID + "/schedule", nobody, nil, codeInsufficientScopes},
		{"rerunTask: unknown", "POST", "/task/" + unknown + "/rerun", &adminCreds, nil, codeResourceNotFound},
		{"rerunTask: run's credentials", "POST", "/task/" + taskID + "/rerun", runCreds, nil, codeInsufficientScopes},
		{"cancelTask: unknown", "POST", "/task/" + unknown + "/cancel", &adminCreds, nil, codeResourceNotFound},
		{"claimWork: bad body", "POST", "/claim-work/" + url.PathEscape(testQueueID), &adminCreds, map[string]any{"tasks": 0}, codeInputValidationError},
		{"claimWork: no scopes", "POST", "/claim-work/" + url.PathEscape(testQueueID), nobody, map[string]any{"tasks": 1, "workerGroup": "g", "workerId": "w"}, codeInsufficientScopes},
		{"reclaimTask: unknown run", "POST", runPath(taskID, 7, "/reclaim"), &adminCreds, nil, codeResourceNotFound},
		{"reclaimTask: no scopes", "POST", runPath(taskID, 0, "/reclaim"), nobody, nil, codeInsufficientScopes},
		{"reportCompleted: unknown task", "POST", "/task/" + unknown + "/runs/0/completed", &adminCreds, nil, codeResourceNotFound},
		{"reportFailed: no scopes", "POST", runPath(taskID, 0, "/failed"), nobody, nil, codeInsufficientScopes},
		{"reportException: bad reason", "POST", runPath(taskID, 0, "/exception"), runCreds, map[string]any{"reason": "bored"}, codeInputValidationError},
		{"createArtifact: unknown run", "POST", art(5, "public/x"), &adminCreds, s3, codeInputError},
		{"createArtifact: bad body", "POST", art(0, "public/x"), runCreds, map[string]any{"storageType": "s3"}, codeInputValidationError},
		{"createArtifact: no scopes", "POST", art(0, "public/x"), nobody, s3, codeInsufficientScopes},
		{"finishArtifact: unknown", "PUT", art(0, "public/none"), runCreds, map[string]any{"uploadId": slugid.Nice()}, codeResourceNotFound},
		{"getArtifact: unknown", "GET", art(0, "public/none"), nil, nil, codeResourceNotFound},
		{"getArtifact: private", "GET", art(0, "private/x"), nil, nil, codeInsufficientScopes},
		{"getLatestArtifact: unknown task", "GET", "/task/" + unknown + "/artifacts/public%2Fx", nil, nil, codeResourceNotFound},
		{"listArtifacts: unknown run", "GET", runPath(taskID, 3, "/artifacts"), nil, nil, codeResourceNotFound},
		{"listLatestArtifacts: no scopes", "GET", "/task/" + taskID + "/artifacts", nobody, nil, codeInsufficientScopes},
		{"artifactInfo: unknown", "GET", runPath(taskID, 0, "/artifact-info/x"), nil, nil, codeResourceNotFound},
		{"latestArtifactInfo: no scopes", "GET", "/task/" + taskID + "/artifact-info/x", nobody, nil, codeInsufficientScopes},
		{"artifact: unknown", "GET", runPath(taskID, 0, "/artifact-content/public%2Fx"), nil, nil, codeResourceNotFound},
		{"latestArtifact: private", "GET", "/task/" + taskID + "/artifact-content/private%2Fx", nil, nil, codeInsufficientScopes},
		{"pendingTasks: no scopes", "GET", "/pending/" + url.PathEscape(testQueueID), nobody, nil, codeInsufficientScopes},
		{"taskQueueCounts: bad queue", "GET", "/task-queues/nope/counts", &adminCreds, nil, codeInvalidRequestArguments},
		{"no such route", "GET", "/nope", nil, nil, codeResourceNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			if raw, ok := tt.body.([]byte); ok {
				resp, b := c.request(tt.method, tt.path, tt.creds, raw)
				if resp.StatusCode != codeStatus[tt.code] {
					t.Fatalf("%s %s = %d %s", tt.method, tt.path, resp.StatusCode, b)
				}
				checkErrorBody(t, b, tt.code)
				return
			}
			eb := c.callErr(tt.method, tt.path, tt.creds, tt.body, tt.code)
			if tt.name != "no such route" && eb.RequestInfo.Method == "" {
				t.Errorf("requestInfo.method is empty")
			}
		})
	}
	c.t = t
	for _, tt := range []struct {
		name, method, path string
		creds              *tc.Credentials
		body               any
		code               string
	}{
		{"createUpload: no scopes", "PUT", "/upload/x", nobody, map[string]any{"projectId": "p", "uploadId": slugid.Nice(), "expires": exp, "proposedUploadMethods": map[string]any{}}, codeInsufficientScopes},
		{"createUpload: bad body", "PUT", "/upload/x", &adminCreds, map[string]any{"projectId": "p"}, codeInputValidationError},
		{"finishUpload: unknown", "POST", "/finish-upload/x", &adminCreds, map[string]any{"projectId": "p", "uploadId": slugid.Nice()}, codeResourceNotFound},
		{"startDownload: unknown", "PUT", "/start-download/x", &adminCreds, map[string]any{"acceptDownloadMethods": map[string]bool{"simple": true}}, codeResourceNotFound},
		{"object: no scopes", "GET", "/metadata/x", nobody, nil, codeInsufficientScopes},
		{"download: unknown", "GET", "/download/x", &adminCreds, nil, codeResourceNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var body []byte
			if tt.body != nil {
				body, _ = json.Marshal(tt.body)
			}
			resp, b := c.requestURL(tt.method, c.root+"/api/object/v1"+tt.path, tt.creds, body, nil)
			if resp.StatusCode != codeStatus[tt.code] {
				t.Fatalf("%s %s = %d %s, want %d", tt.method, tt.path, resp.StatusCode, b, codeStatus[tt.code])
			}
			checkErrorBody(t, b, tt.code)
		})
	}
}
