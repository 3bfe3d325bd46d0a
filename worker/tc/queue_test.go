package tc

import (
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// exampleClaimWork reads the recorded claimWork answer from the shared
// reference folder next to the repository.
func exampleClaimWork(t *testing.T) []byte {
	t.Helper()
	dir := filepath.Join("..", "..", "..", "shared", "reference", "taskcluster-api")
	b, err := os.ReadFile(filepath.Join(dir, "example-claimWork-response.json"))
	if err != nil {
		if _, statErr := os.Stat(dir); errors.Is(statErr, fs.ErrNotExist) && os.Getenv("CI") == "" {
			t.Skipf("reference folder not present: %v", statErr)
		}
		t.Fatal(err)
	}
	return b
}

func TestClaimWorkDecodesRealResponse(t *testing.T) {
	example := exampleClaimWork(t)
	var gotBody map[string]any
	var gotURI string
	srv := fakeService(t, testVerifier(), func(w http.ResponseWriter, r *http.Request, auth *hawkResult) {
		if auth == nil || r.Method != http.MethodPost {
			t.Errorf("%s unsigned=%v", r.Method, auth == nil)
		}
		gotURI = r.RequestURI
		if err := json.Unmarshal(readBody(t, r), &gotBody); err != nil {
			t.Error(err)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(example)
	})
	c := testClient(srv, -1)
	resp, err := c.ClaimWork(t.Context(), "research-prov/research-wt", ClaimWorkRequest{Tasks: 2, WorkerGroup: "wg1", WorkerID: "w1"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "/api/queue/v1/claim-work/research-prov%2Fresearch-wt"; gotURI != want {
		t.Errorf("URI = %q, want %q", gotURI, want)
	}
	if diff := cmp.Diff(map[string]any{"tasks": 2.0, "workerGroup": "wg1", "workerId": "w1"}, gotBody); diff != "" {
		t.Errorf("request body (-want +got):\n%s", diff)
	}
	if len(resp.Tasks) != 1 {
		t.Fatalf("%d tasks", len(resp.Tasks))
	}
	claim := resp.Tasks[0]
	ms := func(h, m, s, milli int) time.Time { return time.Date(2026, 11, 22, h, m, s, milli*1e6, time.UTC) }
	if !claim.TakenUntil.Equal(ms(4, 9, 59, 842)) { // sent as +00:00
		t.Errorf("takenUntil = %v", claim.TakenUntil)
	}
	if claim.RunID != 0 || claim.WorkerGroup != "wg1" || claim.WorkerID != "w1" {
		t.Errorf("claim = %+v", claim)
	}
	if claim.Credentials.ClientID != "task-client/PI-jmdZ5SO2fYPC_oh3gYg/0/on/wg1/w1/until/1795320599.842" ||
		claim.Credentials.AccessToken == "" || !strings.HasPrefix(claim.Credentials.Certificate, `{"version": 1,`) {
		t.Errorf("credentials = %+v", claim.Credentials)
	}

	st := claim.Status
	if st.TaskID != "PI-jmdZ5SO2fYPC_oh3gYg" || st.State != StateRunning || st.RetriesLeft != 5 || st.Priority != "lowest" ||
		st.TaskQueueID != "research-prov/research-wt" || !st.Deadline.Equal(ms(4, 49, 59, 772)) || len(st.Runs) != 1 {
		t.Errorf("status = %+v", st)
	}
	wantRun := Run{
		RunID: 0, State: StateRunning, ReasonCreated: "scheduled", WorkerGroup: "wg1", WorkerID: "w1",
		TakenUntil: ms(4, 9, 59, 842), Scheduled: ms(3, 49, 59, 811), Started: ms(3, 49, 59, 845),
	}
	if diff := cmp.Diff(wantRun, st.Runs[0]); diff != "" {
		t.Errorf("run (-want +got):\n%s", diff)
	}

	def := claim.Task
	if def.ProvisionerID != "research-prov" || def.WorkerType != "research-wt" || def.TaskQueueID != "research-prov/research-wt" ||
		def.SchedulerID != "research" || def.ProjectID != "none" || def.TaskGroupID != "PI-jmdZ5SO2fYPC_oh3gYg" ||
		def.Requires != "all-completed" || def.Priority != "lowest" || def.Retries != 5 ||
		!def.Created.Equal(ms(3, 49, 59, 771)) || !def.Expires.Equal(time.Date(2026, 11, 23, 3, 49, 59, 772e6, time.UTC)) ||
		def.Metadata != (TaskMetadata{Name: "research", Owner: "research@example.com", Source: "https://example.com", Description: "research"}) {
		t.Errorf("definition = %+v", def)
	}
	if def.Dependencies == nil || len(def.Dependencies) != 0 || def.Routes == nil || def.Scopes == nil || def.Tags == nil {
		t.Errorf("empty lists decoded as nil: %+v", def)
	}
	var payload struct {
		Image      string
		Command    []string
		MaxRunTime int
	}
	if err := json.Unmarshal(def.Payload, &payload); err != nil || payload.Image != "ubuntu:24.04" || payload.MaxRunTime != 600 {
		t.Errorf("payload = %+v, %v", payload, err)
	}
	if string(def.Extra) != "{}" {
		t.Errorf("extra = %s", def.Extra)
	}

	// Raw is the definition exactly as the queue sent it.
	var doc struct {
		Tasks []struct {
			Task json.RawMessage `json:"task"`
		} `json:"tasks"`
	}
	if err := json.Unmarshal(example, &doc); err != nil {
		t.Fatal(err)
	}
	if string(def.Raw) != string(doc.Tasks[0].Task) {
		t.Errorf("Raw differs from the original:\n%s\nvs\n%s", def.Raw, doc.Tasks[0].Task)
	}
	// And re-marshalling keeps it.
	again, err := json.Marshal(claim)
	if err != nil {
		t.Fatal(err)
	}
	var back ClaimWorkResponse
	if err := json.Unmarshal([]byte(`{"tasks":[`+string(again)+`]}`), &back); err != nil {
		t.Fatal(err)
	}
	if got, want := compactJSON(t, back.Tasks[0].Task.Raw), compactJSON(t, doc.Tasks[0].Task); got != want {
		t.Errorf("round trip changed the definition:\n%s\nvs\n%s", got, want)
	}
}

func compactJSON(t *testing.T, b []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

func TestTypedTaskDefinitionMarshal(t *testing.T) {
	def := TaskDefinition{
		ProvisionerID: "p", WorkerType: "w", TaskQueueID: "p/w", SchedulerID: "-", TaskGroupID: "g",
		Requires: "all-completed", Priority: "lowest", Retries: 5,
		Created:  time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Deadline: time.Date(2026, 1, 2, 4, 4, 5, 0, time.UTC),
		Metadata: TaskMetadata{Name: "n", Description: "d", Owner: "o@example.com", Source: "https://example.com"},
	}
	b, err := json.Marshal(def)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"provisionerId": "p", "workerType": "w", "taskQueueId": "p/w", "schedulerId": "-", "taskGroupId": "g",
		"dependencies": []any{}, "requires": "all-completed", "routes": []any{}, "priority": "lowest", "retries": 5.0,
		"created": "2026-01-02T03:04:05Z", "deadline": "2026-01-02T04:04:05Z", "scopes": []any{},
		"payload": map[string]any{}, "tags": map[string]any{}, "extra": map[string]any{},
		"metadata": map[string]any{"name": "n", "description": "d", "owner": "o@example.com", "source": "https://example.com"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("typed definition JSON (-want +got):\n%s", diff)
	}
}

func TestReclaimAndResolve(t *testing.T) {
	now := time.Now()
	creds := testTempCreds(t, "queue:resolve-task:T/3")
	tempID := creds.ClientID
	type call struct{ Method, URI, Body, Client string }
	var calls []call
	status := TaskStatus{TaskID: "T", State: StateCompleted, Runs: []Run{{RunID: 0, State: StateCompleted, ReasonCreated: "scheduled", Scheduled: now.UTC()}}}
	srv := fakeService(t, testVerifier(), func(w http.ResponseWriter, r *http.Request, auth *hawkResult) {
		c := call{Method: r.Method, URI: r.RequestURI, Body: string(readBody(t, r))}
		if auth != nil {
			c.Client = auth.ClientID
		}
		calls = append(calls, c)
		if strings.HasSuffix(r.URL.Path, "/reclaim") {
			w.Write([]byte(`{"status":{"taskId":"T","state":"running","runs":[]},"runId":3,"workerGroup":"wg","workerId":"wid",` +
				`"takenUntil":"2026-11-22T04:29:59.842+00:00","credentials":{"clientId":"new","accessToken":"tok","certificate":"{}"}}`))
			return
		}
		writeJSON(w, TaskStatusResponse{Status: status})
	})
	c := testClient(srv, -1).WithCredentials(creds)
	ctx := t.Context()

	rc, err := c.ReclaimTask(ctx, "T", 3)
	if err != nil {
		t.Fatal(err)
	}
	if rc.RunID != 3 || !rc.TakenUntil.Equal(time.Date(2026, 11, 22, 4, 29, 59, 842e6, time.UTC)) ||
		!cmp.Equal(rc.Credentials, Credentials{ClientID: "new", AccessToken: "tok", Certificate: "{}"}) || rc.Status.State != StateRunning {
		t.Errorf("reclaim = %+v", rc)
	}
	for _, f := range []func() (*TaskStatusResponse, error){
		func() (*TaskStatusResponse, error) { return c.ReportCompleted(ctx, "T", 3) },
		func() (*TaskStatusResponse, error) { return c.ReportFailed(ctx, "T", 3) },
		func() (*TaskStatusResponse, error) { return c.ReportException(ctx, "T", 3, ReasonWorkerShutdown) },
		func() (*TaskStatusResponse, error) { return c.CancelTask(ctx, "T") },
		func() (*TaskStatusResponse, error) { return c.Status(ctx, "T") },
		func() (*TaskStatusResponse, error) {
			return c.CreateTask(ctx, "T", json.RawMessage(`{"provisionerId":"p","unknownField":1}`))
		},
	} {
		got, err := f()
		if err != nil {
			t.Fatal(err)
		}
		if got.Status.TaskID != "T" || got.Status.Runs[0].State != StateCompleted {
			t.Errorf("status = %+v", got.Status)
		}
	}
	if _, err := c.ReportException(ctx, "T", 3, "superseded"); err == nil {
		t.Error("ReportException accepted a reason workers may not report")
	}

	want := []call{
		{"POST", "/api/queue/v1/task/T/runs/3/reclaim", "", tempID},
		{"POST", "/api/queue/v1/task/T/runs/3/completed", "", tempID},
		{"POST", "/api/queue/v1/task/T/runs/3/failed", "", tempID},
		{"POST", "/api/queue/v1/task/T/runs/3/exception", `{"reason":"worker-shutdown"}`, tempID},
		{"POST", "/api/queue/v1/task/T/cancel", "", tempID},
		{"GET", "/api/queue/v1/task/T/status", "", tempID},
		{"PUT", "/api/queue/v1/task/T", `{"provisionerId":"p","unknownField":1}`, tempID},
	}
	if diff := cmp.Diff(want, calls); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

func TestTaskKeepsRawDefinition(t *testing.T) {
	const def = `{ "provisionerId": "p", "workerType": "w", "payload": {"image": "x"},  "futureField": [1, 2] }`
	srv := fakeService(t, testVerifier(), func(w http.ResponseWriter, r *http.Request, _ *hawkResult) {
		if r.RequestURI != "/api/queue/v1/task/abc" {
			t.Errorf("URI = %s", r.RequestURI)
		}
		w.Write([]byte(def))
	})
	got, err := New(Config{RootURL: srv.URL, HTTPClient: srv.Client()}).Task(t.Context(), "abc")
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Raw) != def || got.ProvisionerID != "p" || string(got.Payload) != `{"image": "x"}` {
		t.Errorf("got %+v, raw %s", got, got.Raw)
	}
}

func TestCreateArtifactBodies(t *testing.T) {
	expires := time.Date(2027, 1, 2, 3, 4, 5, 678e6, time.UTC)
	type seen struct{ URI, Body string }
	var got seen
	srv := fakeService(t, testVerifier(), func(w http.ResponseWriter, r *http.Request, auth *hawkResult) {
		if auth == nil || r.Method != http.MethodPost {
			t.Errorf("%s signed=%v", r.Method, auth != nil)
		}
		got = seen{r.RequestURI, string(readBody(t, r))}
		var req ArtifactRequest
		if err := json.Unmarshal([]byte(got.Body), &req); err != nil {
			t.Error(err)
		}
		resp := map[string]any{"storageType": req.StorageType}
		if req.StorageType == StorageS3 {
			resp["putUrl"] = "https://bucket.example.com/x?X-Amz-Signature=s"
			resp["expires"] = "2027-01-02T03:04:05.678+00:00"
			resp["contentType"] = req.ContentType
		}
		writeJSON(w, resp)
	})
	c := testClient(srv, -1)
	withLength := S3Artifact(expires, "application/json")
	withLength.ContentLength = 42
	for _, tc := range []struct {
		name string
		req  ArtifactRequest
		want string
	}{
		{"public/logs/live_backing.log", S3Artifact(expires, "text/plain; charset=utf-8"),
			`{"storageType":"s3","expires":"2027-01-02T03:04:05.678Z","contentType":"text/plain; charset=utf-8"}`},
		{"public/data.json", withLength,
			`{"storageType":"s3","expires":"2027-01-02T03:04:05.678Z","contentType":"application/json","contentLength":42}`},
		{"public/logs/live.log", ReferenceArtifact(expires, "https://host.example.com:60023/log/abc", "text/plain; charset=utf-8"),
			`{"storageType":"reference","expires":"2027-01-02T03:04:05.678Z","url":"https://host.example.com:60023/log/abc","contentType":"text/plain; charset=utf-8"}`},
		{"public/latest.log", LinkArtifact(expires, "public/logs/live_backing.log"),
			`{"storageType":"link","expires":"2027-01-02T03:04:05.678Z","artifact":"public/logs/live_backing.log"}`},
		{"public/missing file", ErrorArtifact(expires, ArtifactFileMissing, ""),
			`{"storageType":"error","expires":"2027-01-02T03:04:05.678Z","reason":"file-missing-on-worker","message":""}`},
	} {
		resp, err := c.CreateArtifact(t.Context(), "T", 1, tc.name, tc.req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if want := "/api/queue/v1/task/T/runs/1/artifacts/" + PathEscape(tc.name); got.URI != want {
			t.Errorf("%s: URI = %q, want %q", tc.name, got.URI, want)
		}
		if diff := cmp.Diff(compactJSON(t, []byte(tc.want)), compactJSON(t, []byte(got.Body))); diff != "" {
			t.Errorf("%s: body (-want +got):\n%s", tc.name, diff)
		}
		if resp.StorageType != tc.req.StorageType {
			t.Errorf("%s: response %+v", tc.name, resp)
		}
		if tc.req.StorageType == StorageS3 && (resp.PutURL == "" || !resp.Expires.Equal(expires) || resp.ContentType != tc.req.ContentType) {
			t.Errorf("%s: s3 response %+v", tc.name, resp)
		}
	}
	if got.URI != "/api/queue/v1/task/T/runs/1/artifacts/public%2Fmissing%20file" {
		t.Errorf("URI = %q", got.URI)
	}
	if _, err := c.CreateArtifact(t.Context(), "T", 1, "x", ArtifactRequest{StorageType: "object", Expires: expires}); err == nil {
		t.Error("unsupported storage type accepted")
	}
	if _, err := c.CreateArtifact(t.Context(), "T", 1, "x", S3Artifact(time.Time{}, "text/plain")); err == nil {
		t.Error("artifact without expires accepted")
	}
}

func TestArtifactURL(t *testing.T) {
	c := New(Config{RootURL: "https://tc.example.com/"})
	if got, want := c.ArtifactURL("abc", 2, "public/logs/live.log"), "https://tc.example.com/api/queue/v1/task/abc/runs/2/artifacts/public%2Flogs%2Flive.log"; got != want {
		t.Errorf("ArtifactURL = %q, want %q", got, want)
	}
}

func TestListArtifacts(t *testing.T) {
	var uris []string
	srv := fakeService(t, testVerifier(), func(w http.ResponseWriter, r *http.Request, _ *hawkResult) {
		uris = append(uris, r.RequestURI)
		if r.URL.Query().Get("continuationToken") == "" {
			w.Write([]byte(`{"artifacts":[{"storageType":"s3","name":"public/a","expires":"2027-01-02T03:04:05.678Z","contentType":"text/plain","contentLength":3}],"continuationToken":"next/1"}`))
			return
		}
		w.Write([]byte(`{"artifacts":[]}`))
	})
	c := testClient(srv, -1)
	first, err := c.ListArtifacts(t.Context(), "T", 0, "")
	if err != nil {
		t.Fatal(err)
	}
	want := &ListArtifactsResponse{
		Artifacts:         []Artifact{{StorageType: "s3", Name: "public/a", Expires: time.Date(2027, 1, 2, 3, 4, 5, 678e6, time.UTC), ContentType: "text/plain", ContentLength: 3}},
		ContinuationToken: "next/1",
	}
	if diff := cmp.Diff(want, first); diff != "" {
		t.Errorf("first page (-want +got):\n%s", diff)
	}
	second, err := c.ListLatestArtifacts(t.Context(), "T", first.ContinuationToken)
	if err != nil {
		t.Fatal(err)
	}
	if len(second.Artifacts) != 0 || second.ContinuationToken != "" {
		t.Errorf("second page = %+v", second)
	}
	if diff := cmp.Diff([]string{
		"/api/queue/v1/task/T/runs/0/artifacts",
		"/api/queue/v1/task/T/artifacts?continuationToken=next%2F1",
	}, uris); diff != "" {
		t.Errorf("URIs (-want +got):\n%s", diff)
	}
}
