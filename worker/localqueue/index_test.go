package localqueue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/slugid"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// runToCompletion creates a task (def modified by mod) on a queue of its
// own, claims it, uploads the artifacts public/out.txt and private/out.txt
// holding body and reports it completed; it returns the taskId.
func (c *confEnv) runToCompletion(mod func(map[string]any), body string) string {
	c.t.Helper()
	ctx := c.t.Context()
	queueID := "prov/t" + strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(slugid.Nice()[:10]))
	def := c.taskDef(queueID)
	if mod != nil {
		mod(def)
	}
	raw, _ := json.Marshal(def)
	taskID := slugid.Nice()
	if _, err := c.admin.CreateTask(ctx, taskID, raw); err != nil {
		c.t.Fatal(err)
	}
	claims, err := c.admin.ClaimWork(ctx, queueID, tc.ClaimWorkRequest{Tasks: 1, WorkerGroup: "wg", WorkerID: "w1"})
	if err != nil || len(claims.Tasks) != 1 {
		c.t.Fatalf("claimWork = %+v, %v", claims, err)
	}
	run := c.admin.WithCredentials(claims.Tasks[0].Credentials)
	for _, name := range []string{"public/out.txt", "private/out.txt"} {
		art, err := run.CreateArtifact(ctx, taskID, 0, name, tc.S3Artifact(c.now().Add(time.Hour), "text/plain"))
		if err != nil {
			c.t.Fatal(err)
		}
		if err := run.PutArtifact(ctx, art.PutURL, func(context.Context) (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }, int64(len(body)), "text/plain", ""); err != nil {
			c.t.Fatal(err)
		}
	}
	if _, err := run.ReportCompleted(ctx, taskID, 0); err != nil {
		c.t.Fatal(err)
	}
	return taskID
}

// callService makes an anonymous GET to another service of the queue that
// must answer 200 with a body valid against schemaID, decoded into out.
func (e *env) callService(service, method, path, schemaID string, out any) {
	e.t.Helper()
	resp, b := e.requestURL(method, e.root+"/api/"+service+"/v1"+path, nil, nil, nil)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("%s %s = %d %s", method, path, resp.StatusCode, b)
	}
	e.validate(schemaID, b)
	if err := json.Unmarshal(b, out); err != nil {
		e.t.Fatalf("decode %s: %v", b, err)
	}
}

func wantIndexed(t *testing.T, got *tc.IndexedTask, err error, path, taskID string, rank int64, data string) {
	t.Helper()
	if err != nil {
		t.Fatalf("findTask %s: %v", path, err)
	}
	if got.Namespace != path || got.TaskID != taskID || got.Rank != rank || string(got.Data) != data {
		t.Fatalf("findTask %s = {%s %s %d %s}, want {%s %s %d %s}", path, got.Namespace, got.TaskID, got.Rank, got.Data, path, taskID, rank, data)
	}
}

// TestIndexConformance drives every route of the index service with the tc
// client, every exchange checked against the reference.
func TestIndexConformance(t *testing.T) {
	c := newConfEnv(t)
	ctx := t.Context()
	anon := tc.New(tc.Config{RootURL: c.root, HTTPClient: &http.Client{Transport: c.rec}, Retries: -1})

	if err := c.admin.Request(ctx, serviceIndex, "GET", "/ping", nil, nil, nil); err != nil {
		t.Fatal(err)
	}

	// Completed tasks are indexed under their index.* routes: rank 0, data
	// {} and the task's expiry unless extra.index says otherwise.
	expires := c.now().Add(48 * time.Hour).UTC().Truncate(time.Millisecond)
	a := c.runToCompletion(func(d map[string]any) {
		d["routes"] = []string{"index.project.x.build", "index.project.x.latest", "tc-treeherder.x", "index.bad..path"}
		d["expires"] = expires.Format(time.RFC3339Nano)
	}, "from a")
	got, err := c.admin.FindTask(ctx, "project.x.build")
	wantIndexed(t, got, err, "project.x.build", a, 0, "{}")
	if !got.Expires.Equal(expires) {
		t.Errorf("expires = %s, want the task's %s", got.Expires, expires)
	}
	got, err = anon.FindTask(ctx, "project.x.latest") // anonymous may find
	wantIndexed(t, got, err, "project.x.latest", a, 0, "{}")

	idxExpires := c.now().Add(72 * time.Hour).UTC().Truncate(time.Second)
	b := c.runToCompletion(func(d map[string]any) {
		d["routes"] = []string{"index.project.x.latest"}
		d["extra"] = map[string]any{"index": map[string]any{"rank": 5, "data": map[string]any{"k": "v"}, "expires": idxExpires.Format(time.RFC3339)}}
	}, "from b")
	got, err = c.admin.FindTask(ctx, "project.x.latest")
	wantIndexed(t, got, err, "project.x.latest", b, 5, `{"k":"v"}`)
	if !got.Expires.Equal(idxExpires) {
		t.Errorf("expires = %s, want extra.index.expires %s", got.Expires, idxExpires)
	}
	// A lower rank does not replace; an unusable extra.index indexes nothing.
	c.runToCompletion(func(d map[string]any) { d["routes"] = []string{"index.project.x.latest"} }, "from c")
	c.runToCompletion(func(d map[string]any) {
		d["routes"] = []string{"index.project.x.latest", "index.project.x.other"}
		d["extra"] = map[string]any{"index": map[string]any{"rank": "high"}}
	}, "from d")
	got, err = c.admin.FindTask(ctx, "project.x.latest")
	wantIndexed(t, got, err, "project.x.latest", b, 5, `{"k":"v"}`)
	_, err = c.admin.FindTask(ctx, "project.x.other")
	wantCode(t, "findTask of a path nothing was indexed at", err, codeResourceNotFound)
	if !tc.IsNotFound(err) {
		t.Errorf("IsNotFound(%v) = false", err)
	}

	// insertTask: an equal rank replaces, a lower one answers what stays.
	exp := c.now().Add(time.Hour)
	got, err = c.admin.InsertTask(ctx, "project.x.latest", tc.InsertTaskRequest{TaskID: a, Rank: 5, Expires: exp})
	wantIndexed(t, got, err, "project.x.latest", a, 5, "{}")
	got, err = c.admin.InsertTask(ctx, "project.x.latest", tc.InsertTaskRequest{TaskID: b, Rank: 4, Data: json.RawMessage(`{"n": 1}`), Expires: exp})
	wantIndexed(t, got, err, "project.x.latest", a, 5, "{}")
	got, err = c.admin.FindTask(ctx, "project.x.latest")
	wantIndexed(t, got, err, "project.x.latest", a, 5, "{}")
	_, err = c.nobody.InsertTask(ctx, "project.x.latest", tc.InsertTaskRequest{TaskID: b, Rank: 9, Expires: exp})
	wantCode(t, "insertTask without scopes", err, codeInsufficientScopes)
	_, err = anon.InsertTask(ctx, "project.x.latest", tc.InsertTaskRequest{TaskID: b, Rank: 9, Expires: exp})
	wantCode(t, "anonymous insertTask", err, codeInsufficientScopes)
	_, err = c.nobody.FindTask(ctx, "project.x.latest")
	wantCode(t, "findTask without scopes", err, codeInsufficientScopes)
	for _, ns := range []string{"project.y.one", "project.z", "top", "project.w.deep.er"} {
		if _, err := c.admin.InsertTask(ctx, ns, tc.InsertTaskRequest{TaskID: a, Expires: exp}); err != nil {
			t.Fatal(err)
		}
	}
	// An entry past its expiry is not found (nor listed).
	if _, err := c.admin.InsertTask(ctx, "project.x.gone", tc.InsertTaskRequest{TaskID: a, Expires: c.now().Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	_, err = c.admin.FindTask(ctx, "project.x.gone")
	wantCode(t, "findTask of an expired entry", err, codeResourceNotFound)

	// Listings, page by page.
	var names []string
	for token, pages := "", 0; ; pages++ {
		res, err := anon.ListNamespaces(ctx, "project", token, 1)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range res.Namespaces {
			if want, _ := strings.CutPrefix(n.Namespace, "project."); n.Name != want || !n.Expires.After(c.now()) {
				t.Errorf("namespace %+v", n)
			}
			names = append(names, n.Name)
		}
		if token = res.ContinuationToken; token == "" {
			if pages != 2 {
				t.Errorf("%d pages of one namespace, want 3", pages+1)
			}
			break
		}
	}
	if want := []string{"w", "x", "y"}; !slices.Equal(names, want) { // project.z is an entry, not a namespace
		t.Errorf("namespaces under project = %v, want %v", names, want)
	}
	top, err := c.admin.ListNamespaces(ctx, "", "", 0)
	if err != nil || len(top.Namespaces) != 1 || top.Namespaces[0].Namespace != "project" || top.ContinuationToken != "" {
		t.Fatalf("top-level namespaces = %+v, %v", top, err)
	}
	var paths []string
	for token := ""; ; {
		res, err := c.admin.ListTasks(ctx, "project.x", token, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range res.Tasks {
			paths = append(paths, it.Namespace)
		}
		if token = res.ContinuationToken; token == "" {
			break
		}
	}
	if want := []string{"project.x.build", "project.x.latest"}; !slices.Equal(paths, want) {
		t.Errorf("tasks in project.x = %v, want %v", paths, want)
	}
	if res, err := anon.ListTasks(ctx, "", "", 0); err != nil || len(res.Tasks) != 1 || res.Tasks[0].Namespace != "top" {
		t.Errorf("top-level tasks = %+v, %v", res, err)
	}
	_, err = c.nobody.ListTasks(ctx, "project", "", 0)
	wantCode(t, "listTasks without scopes", err, codeInsufficientScopes)

	// findTasksAtIndex answers the live entries among those asked for.
	var found struct{ Tasks []tc.IndexedTask }
	in := map[string]any{"indexes": []string{"project.x.build", "nothing.here", "project.x.gone", "top"}}
	if err := c.admin.Request(ctx, serviceIndex, "POST", "/tasks/indexes", url.Values{"limit": {"1"}}, in, &found); err != nil || len(found.Tasks) != 1 || found.Tasks[0].Namespace != "project.x.build" {
		t.Fatalf("findTasksAtIndex = %+v, %v", found, err)
	}
	if err := c.admin.Request(ctx, serviceIndex, "POST", "/tasks/indexes", nil, in, &found); err != nil || len(found.Tasks) != 2 || found.Tasks[1].Namespace != "top" {
		t.Fatalf("findTasksAtIndex = %+v, %v", found, err)
	}
	err = c.nobody.Request(ctx, serviceIndex, "POST", "/tasks/indexes", nil, in, nil)
	wantCode(t, "findTasksAtIndex without scopes", err, codeInsufficientScopes)

	// findArtifactFromTask redirects to the queue's latest artifact.
	resp, body := c.requestURL("GET", c.admin.IndexedArtifactURL("project.x.build", "public/out.txt"), nil, nil, nil)
	wantLoc := c.root + "/api/queue/v1/task/" + a + "/artifacts/public%2Fout.txt"
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != wantLoc {
		t.Fatalf("findArtifactFromTask = %d %s, Location %q; want 303 to %s", resp.StatusCode, body, resp.Header.Get("Location"), wantLoc)
	}
	var content bytes.Buffer
	if _, err := anon.Download(ctx, anon.IndexedArtifactURL("project.x.build", "public/out.txt"), &content); err != nil || content.String() != "from a" {
		t.Fatalf("download through the index = %q, %v", content.String(), err)
	}
	_, err = anon.Download(ctx, anon.IndexedArtifactURL("project.x.build", "private/x"), io.Discard)
	wantCode(t, "anonymous findArtifactFromTask of a private artifact", err, codeInsufficientScopes)
	// A private artifact: the redirect carries the index's signature (a
	// bewit), so that whoever the index let through gets the artifact
	// without credentials of their own, for 15 minutes.
	resp, body = c.requestURL("GET", c.admin.IndexedArtifactURL("project.x.build", "private/out.txt"), &adminCreds, nil, nil)
	signed := resp.Header.Get("Location")
	wantPrefix := c.root + "/api/queue/v1/task/" + a + "/artifacts/private%2Fout.txt?bewit="
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(signed, wantPrefix) {
		t.Fatalf("findArtifactFromTask of a private artifact = %d %s, Location %q; want 303 to %s...", resp.StatusCode, body, signed, wantPrefix)
	}
	content.Reset()
	if _, err := anon.Download(ctx, signed, &content); err != nil || content.String() != "from a" {
		t.Fatalf("anonymous download of the signed redirect = %q, %v", content.String(), err)
	}
	content.Reset()
	if _, err := c.admin.Download(ctx, c.admin.IndexedArtifactURL("project.x.build", "private/out.txt"), &content); err != nil || content.String() != "from a" {
		t.Fatalf("download of a private artifact through the index = %q, %v", content.String(), err)
	}
	for what, u := range map[string]string{
		"another artifact": strings.Replace(signed, "private%2Fout.txt", "private%2Fother.txt", 1),
		"a forged bewit":   signed[:len(signed)-4] + "AAAA",
	} {
		_, err = anon.Download(ctx, u, io.Discard)
		wantCode(t, "signed redirect used for "+what, err, codeAuthenticationFailed)
	}
	c.advance(indexRedirectLifetime + time.Second)
	_, err = anon.Download(ctx, signed, io.Discard)
	wantCode(t, "expired signed redirect", err, codeAuthenticationFailed)
	c.advance(-indexRedirectLifetime - time.Second)
	_, err = anon.Download(ctx, anon.IndexedArtifactURL("nothing.here", "public/out.txt"), io.Discard)
	wantCode(t, "findArtifactFromTask of an unknown path", err, codeResourceNotFound)

	// deleteTask removes the entry; its namespace stays.
	if err := c.admin.Request(ctx, serviceIndex, "DELETE", "/task/project.y.one", nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	_, err = c.admin.FindTask(ctx, "project.y.one")
	wantCode(t, "findTask after deleteTask", err, codeResourceNotFound)
	if res, err := c.admin.ListNamespaces(ctx, "project", "", 0); err != nil || len(res.Namespaces) != 3 {
		t.Errorf("namespaces after deleteTask = %+v, %v", res, err)
	}
	err = c.nobody.Request(ctx, serviceIndex, "DELETE", "/task/project.z", nil, nil, nil)
	wantCode(t, "deleteTask without scopes", err, codeInsufficientScopes)

	c.checkExercised(serviceIndex)
}

// Raw HTTP: requests the index refuses, each with a Taskcluster error body.
func TestIndexErrors(t *testing.T) {
	c := newConfEnv(t)
	exp := formatTime(c.now().Add(time.Hour))
	good := map[string]any{"taskId": slugid.Nice(), "rank": 1, "data": map[string]any{}, "expires": exp}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for kk, vv := range good {
			m[kk] = vv
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	wrongKey := &tc.Credentials{ClientID: adminCreds.ClientID, AccessToken: "wrong"}
	for _, tt := range []struct {
		name, method, path string
		creds              *tc.Credentials
		body               any
		code               string
	}{
		{"findTask: unknown", "GET", "/task/no.such.path", nil, nil, codeResourceNotFound},
		{"findTask: empty element", "GET", "/task/a..b", nil, nil, codeInvalidRequestArguments},
		{"findTask: slash", "GET", "/task/a%2Fb", nil, nil, codeInvalidRequestArguments},
		{"findTask: wrong key", "GET", "/task/a.b", wrongKey, nil, codeAuthenticationFailed},
		{"findTask: no scopes", "GET", "/task/a.b", &nobodyCreds, nil, codeInsufficientScopes},
		{"insertTask: not JSON", "PUT", "/task/a.b", &adminCreds, []byte("{"), codeMalformedPayload},
		{"insertTask: no taskId", "PUT", "/task/a.b", &adminCreds, with("taskId", nil), codeInputValidationError},
		{"insertTask: bad taskId", "PUT", "/task/a.b", &adminCreds, with("taskId", "nope"), codeInputValidationError},
		{"insertTask: rank not a number", "PUT", "/task/a.b", &adminCreds, with("rank", "1"), codeInputValidationError},
		{"insertTask: data not an object", "PUT", "/task/a.b", &adminCreds, with("data", []int{1}), codeInputValidationError},
		{"insertTask: bad expires", "PUT", "/task/a.b", &adminCreds, with("expires", "tomorrow"), codeInputValidationError},
		{"insertTask: unknown property", "PUT", "/task/a.b", &adminCreds, with("extra", 1), codeInputValidationError},
		{"insertTask: bad namespace", "PUT", "/task/a.", &adminCreds, good, codeInvalidRequestArguments},
		{"insertTask: anonymous", "PUT", "/task/a.b", nil, good, codeInsufficientScopes},
		{"listNamespaces: bad limit", "GET", "/namespaces/a?limit=x", nil, nil, codeInvalidRequestArguments},
		{"listTasks: bad token", "GET", "/tasks/a?continuationToken=%25", nil, nil, codeInvalidRequestArguments},
		{"listTasks: no scopes", "GET", "/tasks/a", &nobodyCreds, nil, codeInsufficientScopes},
		{"findTasksAtIndex: bad shape", "POST", "/tasks/indexes", &adminCreds, map[string]any{"indexes": "a"}, codeInputValidationError},
		{"findArtifactFromTask: private, anonymous", "GET", "/task/a.b/artifacts/private%2Fx", nil, nil, codeInsufficientScopes},
		{"deleteTask: anonymous", "DELETE", "/task/a.b", nil, nil, codeInsufficientScopes},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			var body []byte
			if raw, ok := tt.body.([]byte); ok {
				body = raw
			} else if tt.body != nil {
				body, _ = json.Marshal(tt.body)
			}
			resp, b := c.requestURL(tt.method, c.root+"/api/index/v1"+tt.path, tt.creds, body, nil)
			if resp.StatusCode != codeStatus[tt.code] {
				t.Fatalf("%s %s = %d %s, want %d", tt.method, tt.path, resp.StatusCode, b, codeStatus[tt.code])
			}
			if eb := checkErrorBody(t, b, tt.code); eb.RequestInfo.Method == "" {
				t.Error("requestInfo.method is empty")
			}
		})
	}
}

// The index lives in the durable store with the tasks: entries and
// namespaces are there after a restart.
func TestIndexSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	dataDir := t.TempDir()
	open := func() *env {
		store, err := OpenBoltStore(path)
		if err != nil {
			t.Fatal(err)
		}
		e := newEnv(t, func(c *Config) { c.Store = store; c.DataDir = dataDir })
		t.Cleanup(func() { e.q.Close() })
		return e
	}
	e := open()
	def := e.taskDef(testQueueID)
	def["routes"] = []string{"index.durable.ns.entry"}
	taskID, _ := e.createTask(def)
	claims := e.claim(testQueueID, 1)
	e.call("POST", runPath(taskID, 0, "/completed"), credsOf(claims[0].Credentials), nil, 200, "", nil)
	e.srv.Close()
	e.q.Close()

	e = open()
	var got indexedTaskJSON
	e.callService(serviceIndex, "GET", "/task/durable.ns.entry", "index/v1/indexed-task-response.json", &got)
	if got.TaskID != taskID || got.Namespace != "durable.ns.entry" {
		t.Fatalf("after restart: %+v", got)
	}
	var nss struct{ Namespaces []namespaceJSON }
	e.callService(serviceIndex, "GET", "/namespaces/durable", "index/v1/list-namespaces-response.json", &nss)
	if len(nss.Namespaces) != 1 || nss.Namespaces[0].Namespace != "durable.ns" {
		t.Fatalf("namespaces after restart: %+v", nss)
	}
}

// Both stores page index entries, namespaces and purge requests alike.
func TestStoreRanges(t *testing.T) {
	for _, tt := range []struct {
		name string
		open func(t *testing.T) Store
	}{
		{"memory", func(*testing.T) Store { return NewMemStore() }},
		{"bolt", func(t *testing.T) Store {
			s, err := OpenBoltStore(filepath.Join(t.TempDir(), "q.db"))
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			s := tt.open(t)
			defer s.Close()
			exp := time.UnixMilli(5000).UTC()
			var c Change
			for _, p := range []string{"a.b", "a.c", "a.b.x", "ab", "a.d", "top"} {
				c.IndexedTasks = append(c.IndexedTasks, &IndexedTaskRecord{Path: p, TaskID: "t-" + p, Data: json.RawMessage(`{}`), Expires: exp})
			}
			for _, p := range []string{"a", "a.b", "ab", "a.b.c"} {
				c.Namespaces = append(c.Namespaces, &NamespaceRecord{Path: p, Expires: exp})
			}
			for _, p := range []struct{ pool, cache string }{{"p/a", "x"}, {"p/a", "y"}, {"p/b", "x"}, {"p/ab", "x"}} {
				c.PurgeRequests = append(c.PurgeRequests, &PurgeRecord{WorkerPoolID: p.pool, CacheName: p.cache, Before: exp, Expires: exp})
			}
			c.DeleteIndexedTasks = []string{"a.d"}
			if err := s.Commit(ctx, c); err != nil {
				t.Fatal(err)
			}
			paths := func(recs []*IndexedTaskRecord, err error) []string {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
				var out []string
				for _, r := range recs {
					out = append(out, r.Path)
				}
				return out
			}
			for _, q := range []struct {
				ns, after string
				limit     int
				want      []string
			}{
				{"a", "", 0, []string{"a.b", "a.c"}},
				{"a", "", 1, []string{"a.b"}},
				{"a", "b", 5, []string{"a.c"}},
				{"a", "c", 5, nil},
				{"", "", 0, []string{"ab", "top"}},
				{"a.b", "", 0, []string{"a.b.x"}},
			} {
				if got := paths(s.IndexedTasks(ctx, q.ns, q.after, q.limit)); !slices.Equal(got, q.want) {
					t.Errorf("IndexedTasks(%q, %q, %d) = %v, want %v", q.ns, q.after, q.limit, got, q.want)
				}
			}
			if r, err := s.IndexedTask(ctx, "a.b.x"); err != nil || r.TaskID != "t-a.b.x" {
				t.Errorf("IndexedTask = %+v, %v", r, err)
			}
			if _, err := s.IndexedTask(ctx, "a.d"); !isNotFound(err) {
				t.Errorf("IndexedTask of a deleted entry = %v", err)
			}
			nss, err := s.Namespaces(ctx, "a", "", 0)
			if err != nil || len(nss) != 1 || nss[0].Path != "a.b" {
				t.Errorf("Namespaces(a) = %+v, %v", nss, err)
			}
			if n, err := s.Namespace(ctx, "a.b.c"); err != nil || !n.Expires.Equal(exp) {
				t.Errorf("Namespace = %+v, %v", n, err)
			}
			keys := func(recs []*PurgeRecord, err error) []string {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
				var out []string
				for _, r := range recs {
					out = append(out, r.WorkerPoolID+":"+r.CacheName)
				}
				return out
			}
			for _, q := range []struct {
				pool, after string
				limit       int
				want        []string
			}{
				{"p/a", "", 0, []string{"p/a:x", "p/a:y"}},
				{"", "", 0, []string{"p/a:x", "p/a:y", "p/ab:x", "p/b:x"}},
				{"", (&PurgeRecord{WorkerPoolID: "p/a", CacheName: "y"}).Key(), 1, []string{"p/ab:x"}},
				{"p/b", "", 3, []string{"p/b:x"}},
			} {
				if got := keys(s.PurgeRequests(ctx, q.pool, q.after, q.limit)); !slices.Equal(got, q.want) {
					t.Errorf("PurgeRequests(%q, %q, %d) = %v, want %v", q.pool, q.after, q.limit, got, q.want)
				}
			}
		})
	}
}

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }
