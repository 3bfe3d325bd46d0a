package localqueue

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/internal/apischema"
	"go.dockerworker.dev/docker-worker/worker/slugid"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

const (
	testIssuerToken = "test-issuer-secret"
	testQueueID     = "test-prov/test-type"
)

var adminCreds = tc.Credentials{ClientID: "admin", AccessToken: "admin-secret"}

// env is a queue served by an httptest server on 127.0.0.1.
type env struct {
	t       *testing.T
	q       *Queue
	srv     *httptest.Server
	root    string
	schemas *apischema.Set // nil when the reference schemas are absent outside CI
	client  *http.Client
	// offset shifts the queue's clock (and the signing clock) forward.
	offset atomic.Int64
}

// testLogger sends the queue's log to t.Log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func newEnv(t *testing.T, mod func(*Config)) *env {
	t.Helper()
	e := &env{t: t}
	e.srv = httptest.NewUnstartedServer(nil)
	e.root = "http://" + e.srv.Listener.Addr().String()
	cfg := Config{
		RootURL:           e.root,
		DataDir:           t.TempDir(),
		Clients:           []Client{{ClientID: adminCreds.ClientID, AccessToken: adminCreds.AccessToken, Scopes: []string{"*"}}},
		IssuerAccessToken: testIssuerToken,
		ClaimWait:         200 * time.Millisecond,
		Logger:            testLogger(t),
		Now:               e.now,
	}
	if mod != nil {
		mod(&cfg)
	}
	q, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.q = q
	e.srv.Config.Handler = q.Handler()
	e.srv.Start()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = q.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		e.srv.Close()
	})
	e.schemas = openSchemas(t)
	e.client = &http.Client{
		Transport:     &http.Transport{DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	t.Cleanup(e.client.CloseIdleConnections)
	return e
}

// openSchemas opens the reference schemas; outside CI their absence only
// turns schema validation off (the behaviour tests still run).
func openSchemas(t *testing.T) *apischema.Set {
	t.Helper()
	if _, err := apischema.Dir(); err != nil && os.Getenv("CI") == "" {
		t.Logf("schema validation off: %v", err)
		return nil
	}
	return apischema.Open(t)
}

func (e *env) now() time.Time { return time.Now().Add(time.Duration(e.offset.Load())) }

// advance moves the queue's clock forward.
func (e *env) advance(d time.Duration) { e.offset.Add(int64(d)) }

// validate checks doc against a schema, if the schemas are available.
func (e *env) validate(schemaID string, doc []byte) {
	e.t.Helper()
	if e.schemas == nil {
		return
	}
	if err := e.schemas.Validate(schemaID, doc); err != nil {
		e.t.Fatalf("%s\ndocument: %s", err, doc)
	}
}

// request sends a raw request to <root>/api/queue/v1<path>, Hawk-signed
// with creds (unless nil), and returns the response and its body.
func (e *env) request(method, path string, creds *tc.Credentials, body []byte) (*http.Response, []byte) {
	e.t.Helper()
	return e.requestURL(method, e.root+"/api/queue/v1"+path, creds, body, nil)
}

func (e *env) requestURL(method, u string, creds *tc.Credentials, body []byte, header http.Header) (*http.Response, []byte) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		e.t.Fatalf("NewRequest: %v", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if creds != nil {
		h, err := tc.SignRequest(*creds, method, req.URL, e.now())
		if err != nil {
			e.t.Fatalf("SignRequest: %v", err)
		}
		req.Header.Set("Authorization", h)
	}
	return e.do(req)
}

func (e *env) do(req *http.Request) (*http.Response, []byte) {
	e.t.Helper()
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: read body: %v", req.Method, req.URL, err)
	}
	return resp, b
}

// call makes an API call that must answer wantStatus with a body valid
// against schemaID (an error body when wantStatus is not 2xx/3xx and
// schemaID is empty), and decodes it into out (if non-nil).
func (e *env) call(method, path string, creds *tc.Credentials, in any, wantStatus int, schemaID string, out any) []byte {
	e.t.Helper()
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			e.t.Fatalf("encode request: %v", err)
		}
	}
	resp, b := e.request(method, path, creds, body)
	if resp.StatusCode != wantStatus {
		e.t.Fatalf("%s %s = %d %s, want %d", method, path, resp.StatusCode, b, wantStatus)
	}
	if schemaID != "" {
		e.validate(schemaID, b)
	} else if wantStatus >= 400 {
		checkErrorBody(e.t, b, "")
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("decode %s: %v", b, err)
		}
	}
	return b
}

// callErr makes a call that must fail with code (and its status).
func (e *env) callErr(method, path string, creds *tc.Credentials, in any, code string) errorBody {
	e.t.Helper()
	b := e.call(method, path, creds, in, codeStatus[code], "", nil)
	return checkErrorBody(e.t, b, code)
}

// checkErrorBody checks b is a Taskcluster error body (exactly code,
// message, requestInfo{method, params, payload, time}) with the given code.
func checkErrorBody(t *testing.T, b []byte, code string) errorBody {
	t.Helper()
	var shape map[string]json.RawMessage
	if err := json.Unmarshal(b, &shape); err != nil {
		t.Fatalf("error body %s is not a JSON object: %v", b, err)
	}
	if got := slices.Sorted(mapsKeys(shape)); !slices.Equal(got, []string{"code", "message", "requestInfo"}) {
		t.Fatalf("error body %s has keys %v, want code, message, requestInfo", b, got)
	}
	var info map[string]json.RawMessage
	if err := json.Unmarshal(shape["requestInfo"], &info); err != nil {
		t.Fatalf("requestInfo of %s: %v", b, err)
	}
	if got := slices.Sorted(mapsKeys(info)); !slices.Equal(got, []string{"method", "params", "payload", "time"}) {
		t.Fatalf("requestInfo of %s has keys %v, want method, params, payload, time", b, got)
	}
	var eb errorBody
	if err := json.Unmarshal(b, &eb); err != nil {
		t.Fatalf("decode error body %s: %v", b, err)
	}
	if code != "" && eb.Code != code {
		t.Fatalf("error code = %s (%s), want %s", eb.Code, eb.Message, code)
	}
	if _, err := time.Parse(tcTimeLayout, eb.RequestInfo.Time); err != nil {
		t.Fatalf("requestInfo.time %q: %v", eb.RequestInfo.Time, err)
	}
	return eb
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// taskDef is a minimal valid createTask body for queueID.
func (e *env) taskDef(queueID string) map[string]any {
	now := e.now().UTC()
	return map[string]any{
		"taskQueueId": queueID,
		"created":     now.Format(time.RFC3339Nano),
		"deadline":    now.Add(time.Hour).Format(time.RFC3339Nano),
		"payload":     map[string]any{"image": "ubuntu:24.04", "command": []string{"true"}, "maxRunTime": 600},
		"metadata": map[string]any{
			"name": "test", "description": "a test task", "owner": "test@example.com", "source": "https://example.com/test",
		},
	}
}

// createTask creates a task from def (validated against the request
// schema) and returns its id and status.
func (e *env) createTask(def map[string]any) (string, taskStatus) {
	e.t.Helper()
	b, _ := json.Marshal(def)
	e.validate("queue/v1/create-task-request.json", b)
	taskID := slugid.Nice()
	var resp statusResponse
	e.call("PUT", "/task/"+taskID, &adminCreds, def, 200, "queue/v1/task-status-response.json", &resp)
	return taskID, resp.Status
}

func (e *env) status(taskID string) taskStatus {
	e.t.Helper()
	var resp statusResponse
	e.call("GET", "/task/"+taskID+"/status", nil, nil, 200, "queue/v1/task-status-response.json", &resp)
	return resp.Status
}

// claim claims up to n tasks of queueID (path-escaped) as wg/w1.
func (e *env) claim(queueID string, n int) []claimJSON {
	e.t.Helper()
	req := map[string]any{"tasks": n, "workerGroup": "wg", "workerId": "w1"}
	b, _ := json.Marshal(req)
	e.validate("queue/v1/claim-work-request.json", b)
	var resp claimWorkResponse
	e.call("POST", "/claim-work/"+url.PathEscape(queueID), &adminCreds, req, 200, "queue/v1/claim-work-response.json", &resp)
	return resp.Tasks
}

// claimOne creates a task on a fresh queue and claims it.
func (e *env) claimOne(mod func(map[string]any)) claimJSON {
	e.t.Helper()
	queueID := "prov/t" + strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(slugid.Nice()[:10]))
	def := e.taskDef(queueID)
	if mod != nil {
		mod(def)
	}
	taskID, _ := e.createTask(def)
	claims := e.claim(queueID, 1)
	if len(claims) != 1 || claims[0].Status.TaskID != taskID {
		e.t.Fatalf("claim returned %+v, want task %s", claims, taskID)
	}
	return claims[0]
}

func credsOf(c credentialsJSON) *tc.Credentials {
	return &tc.Credentials{ClientID: c.ClientID, AccessToken: c.AccessToken, Certificate: c.Certificate}
}

func runPath(taskID string, runID int, rest string) string {
	return "/task/" + taskID + "/runs/" + strconv.Itoa(runID) + rest
}
