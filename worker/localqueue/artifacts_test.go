package localqueue

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/tc"
)

// artifactEnv is a claimed run to attach artifacts to.
type artifactEnv struct {
	*env
	taskID string
	creds  *tc.Credentials
	exp    string // a valid artifact expiry
}

func newArtifactEnv(t *testing.T) *artifactEnv {
	e := newEnv(t, nil)
	c := e.claimOne(nil)
	return &artifactEnv{env: e, taskID: c.Status.TaskID, creds: credsOf(c.Credentials), exp: formatTime(e.now().Add(24 * time.Hour))}
}

// create posts an artifact (name path-escaped) that must be accepted.
func (a *artifactEnv) create(name string, req map[string]any) map[string]any {
	a.t.Helper()
	b, _ := json.Marshal(req)
	a.validate("queue/v1/post-artifact-request.json", b)
	var resp map[string]any
	a.call("POST", runPath(a.taskID, 0, "/artifacts/"+url.PathEscape(name)), a.creds, req, 200, "queue/v1/post-artifact-response.json", &resp)
	if resp["storageType"] != req["storageType"] {
		a.t.Fatalf("createArtifact answered storageType %v, want %v", resp["storageType"], req["storageType"])
	}
	return resp
}

func (a *artifactEnv) createErr(name string, req map[string]any, code string) {
	a.t.Helper()
	a.callErr("POST", runPath(a.taskID, 0, "/artifacts/"+url.PathEscape(name)), a.creds, req, code)
}

// get fetches an artifact through path (escaped or not, by the caller)
// and returns the redirect target, checking the 303 and its body.
func (a *artifactEnv) get(path string) string {
	a.t.Helper()
	resp, b := a.request("GET", path, nil, nil)
	if resp.StatusCode != http.StatusSeeOther {
		a.t.Fatalf("GET %s = %d %s, want 303", path, resp.StatusCode, b)
	}
	a.validate("queue/v1/get-artifact-response.json", b)
	var body getArtifactResponse
	if err := json.Unmarshal(b, &body); err != nil {
		a.t.Fatal(err)
	}
	loc := resp.Header.Get("Location")
	if loc == "" || loc != body.URL {
		a.t.Fatalf("GET %s: Location %q, body url %q", path, loc, body.URL)
	}
	return loc
}

func gzipped(t *testing.T, s string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestS3Artifact(t *testing.T) {
	a := newArtifactEnv(t)
	const name = "public/logs/build.log"
	resp := a.create(name, map[string]any{"storageType": "s3", "expires": a.exp, "contentType": "text/plain; charset=utf-8"})
	putURL := resp["putUrl"].(string)
	if !strings.HasPrefix(putURL, a.root+"/api/queue/v1/_store/") {
		t.Fatalf("putUrl %q is not served by the queue", putURL)
	}

	data := gzipped(t, "hello from the task\n")
	put, _ := a.requestURL("PUT", putURL, nil, data, http.Header{
		"Content-Type":     {"text/plain; charset=utf-8"},
		"Content-Encoding": {"gzip"},
	})
	if put.StatusCode != 200 {
		t.Fatalf("PUT putUrl = %d", put.StatusCode)
	}

	for _, path := range []string{
		runPath(a.taskID, 0, "/artifacts/"+url.PathEscape(name)),
		runPath(a.taskID, 0, "/artifacts/"+name),
		"/task/" + a.taskID + "/artifacts/" + url.PathEscape(name),
		"/task/" + a.taskID + "/artifacts/" + name,
	} {
		loc := a.get(path)
		got, body := a.requestURL("GET", loc, nil, nil, nil)
		if got.StatusCode != 200 || !bytes.Equal(body, data) {
			t.Fatalf("GET %s = %d, %d bytes; want the %d gzip bytes as uploaded", loc, got.StatusCode, len(body), len(data))
		}
		if ce, ct := got.Header.Get("Content-Encoding"), got.Header.Get("Content-Type"); ce != "gzip" || ct != "text/plain; charset=utf-8" {
			t.Errorf("stored bytes served with Content-Encoding %q, Content-Type %q", ce, ct)
		}
	}

	// Re-creating it identically is fine; differently is not.
	a.create(name, map[string]any{"storageType": "s3", "expires": a.exp, "contentType": "text/plain; charset=utf-8"})
	a.createErr(name, map[string]any{"storageType": "s3", "expires": a.exp, "contentType": "application/json"}, codeRequestConflict)
	a.createErr(name, map[string]any{"storageType": "reference", "expires": a.exp, "url": "https://example.com/x", "contentType": "text/plain"}, codeRequestConflict)

	// A tampered URL is refused.
	bad := putURL[:len(putURL)-2] + "xx"
	r, b := a.requestURL("PUT", bad, nil, data, nil)
	if r.StatusCode != 401 {
		t.Fatalf("PUT with a tampered token = %d, want 401", r.StatusCode)
	}
	checkErrorBody(t, b, codeAuthenticationFailed)
}

func TestS3ArtifactNotUploaded(t *testing.T) {
	a := newArtifactEnv(t)
	a.create("public/missing", map[string]any{"storageType": "s3", "expires": a.exp, "contentType": "text/plain"})
	loc := a.get(runPath(a.taskID, 0, "/artifacts/public/missing"))
	r, b := a.requestURL("GET", loc, nil, nil, nil)
	if r.StatusCode != 404 {
		t.Fatalf("GET of bytes never uploaded = %d, want 404", r.StatusCode)
	}
	checkErrorBody(t, b, codeResourceNotFound)
}

func TestReferenceLinkAndErrorArtifacts(t *testing.T) {
	a := newArtifactEnv(t)
	const live = "public/logs/live.log"
	a.create(live, map[string]any{"storageType": "reference", "expires": a.exp, "url": "https://livelog.example.com/abc", "contentType": "text/plain"})
	if loc := a.get(runPath(a.taskID, 0, "/artifacts/"+url.PathEscape(live))); loc != "https://livelog.example.com/abc" {
		t.Fatalf("reference redirects to %q", loc)
	}
	// A reference may be replaced by another reference...
	a.create(live, map[string]any{"storageType": "reference", "expires": a.exp, "url": "https://livelog.example.com/def", "contentType": "text/plain"})
	if loc := a.get(runPath(a.taskID, 0, "/artifacts/"+live)); loc != "https://livelog.example.com/def" {
		t.Fatalf("replaced reference redirects to %q", loc)
	}

	// ... and by a link, which getArtifact follows to the linked bytes.
	const backing = "public/logs/live_backing.log"
	put := a.create(backing, map[string]any{"storageType": "s3", "expires": a.exp, "contentType": "text/plain"})
	if r, _ := a.requestURL("PUT", put["putUrl"].(string), nil, []byte("log text"), http.Header{"Content-Type": {"text/plain"}}); r.StatusCode != 200 {
		t.Fatalf("PUT = %d", r.StatusCode)
	}
	a.create(live, map[string]any{"storageType": "link", "expires": a.exp, "artifact": backing})
	loc := a.get("/task/" + a.taskID + "/artifacts/" + url.PathEscape(live))
	if r, body := a.requestURL("GET", loc, nil, nil, nil); r.StatusCode != 200 || string(body) != "log text" {
		t.Fatalf("following the link: %d %q", r.StatusCode, body)
	}
	// A link may not go back to being a reference (unless expires grows).
	a.createErr(live, map[string]any{"storageType": "reference", "expires": a.exp, "url": "https://example.com/", "contentType": "text/plain"}, codeRequestConflict)

	// Links to missing artifacts and link cycles.
	a.create("public/dangling", map[string]any{"storageType": "link", "expires": a.exp, "artifact": "public/nowhere"})
	a.callErr("GET", runPath(a.taskID, 0, "/artifacts/public/dangling"), nil, nil, codeResourceNotFound)
	a.create("public/loop-a", map[string]any{"storageType": "link", "expires": a.exp, "artifact": "public/loop-b"})
	a.create("public/loop-b", map[string]any{"storageType": "link", "expires": a.exp, "artifact": "public/loop-a"})
	a.callErr("GET", runPath(a.taskID, 0, "/artifacts/public/loop-a"), nil, nil, codeInputError)

	// Error artifacts answer 424 with their reason and message.
	a.create("public/result.json", map[string]any{"storageType": "error", "expires": a.exp, "reason": "file-missing-on-worker", "message": "no such file"})
	r, b := a.request("GET", runPath(a.taskID, 0, "/artifacts/public%2Fresult.json"), nil, nil)
	if r.StatusCode != http.StatusFailedDependency {
		t.Fatalf("GET error artifact = %d %s, want 424", r.StatusCode, b)
	}
	var body map[string]string
	if err := json.Unmarshal(b, &body); err != nil || body["reason"] != "file-missing-on-worker" || body["message"] != "no such file" {
		t.Fatalf("error artifact body %s", b)
	}
	if st := r.Header.Get("x-taskcluster-artifact-storage-type"); st != "error" {
		t.Errorf("storage type header = %q", st)
	}
	a.callErr("GET", runPath(a.taskID, 0, "/artifacts/public/none"), nil, nil, codeResourceNotFound)

	// The JSON forms: artifact (content, links followed) and artifactInfo
	// (metadata, links not followed).
	var content map[string]string
	a.call("GET", runPath(a.taskID, 0, "/artifact-content/"+url.PathEscape(live)), nil, nil, 200, "queue/v1/artifact-content-response.json", &content)
	if content["storageType"] != "s3" || !strings.HasPrefix(content["url"], a.root+"/api/queue/v1/_store/") {
		t.Errorf("artifact content of the link = %v", content)
	}
	content = nil
	a.call("GET", "/task/"+a.taskID+"/artifact-content/public/result.json", nil, nil, 200, "queue/v1/artifact-content-response.json", &content)
	if content["storageType"] != "error" || content["reason"] != "file-missing-on-worker" {
		t.Errorf("artifact content of the error artifact = %v", content)
	}
	var info artifactJSON
	a.call("GET", runPath(a.taskID, 0, "/artifact-info/"+live), nil, nil, 200, "queue/v1/artifact-response.json", &info)
	if info.StorageType != "link" || info.Name != live || info.ContentType != defaultArtifactContentType {
		t.Errorf("artifact info of the link = %+v", info)
	}
	a.call("GET", "/task/"+a.taskID+"/artifact-info/"+url.PathEscape(backing), nil, nil, 200, "queue/v1/artifact-response.json", &info)
	if info.StorageType != "s3" || info.Name != backing {
		t.Errorf("latest artifact info = %+v", info)
	}
}

func TestCreateArtifactRejects(t *testing.T) {
	a := newArtifactEnv(t)
	st := a.status(a.taskID)
	taskExpires := mustTime(st.Expires)

	// Expiring after the task is an InputError.
	a.createErr("public/late", map[string]any{"storageType": "s3", "expires": formatTime(taskExpires.Add(time.Hour)), "contentType": "text/plain"}, codeInputError)
	a.createErr("public/x", map[string]any{"storageType": "s3", "expires": a.exp}, codeInputValidationError)
	a.createErr("public/x", map[string]any{"storageType": "reference", "expires": a.exp, "url": "not a url", "contentType": "text/plain"}, codeInputValidationError)
	a.createErr("public/x", map[string]any{"storageType": "error", "expires": a.exp, "reason": "oops", "message": "m"}, codeInputValidationError)
	a.createErr("public/x", map[string]any{"storageType": "link", "expires": a.exp, "artifact": "a", "url": "https://x"}, codeInputValidationError)
	a.callErr("POST", runPath(a.taskID, 0, "/artifacts/public/x"), nil, map[string]any{"storageType": "s3", "expires": a.exp, "contentType": "text/plain"}, codeInsufficientScopes)
	a.callErr("POST", runPath(a.taskID, 3, "/artifacts/public/x"), a.creds, map[string]any{"storageType": "s3", "expires": a.exp, "contentType": "text/plain"}, codeInputError)

	// Resolved completed: no more artifacts.
	a.call("POST", runPath(a.taskID, 0, "/completed"), a.creds, nil, 200, "queue/v1/task-status-response.json", nil)
	a.createErr("public/after", map[string]any{"storageType": "s3", "expires": a.exp, "contentType": "text/plain"}, codeRequestConflict)

	// Resolved exception: still allowed for a while (logs after the report).
	b := newArtifactEnv(t)
	b.call("POST", runPath(b.taskID, 0, "/exception"), b.creds, map[string]string{"reason": "worker-shutdown"}, 200, "queue/v1/task-status-response.json", nil)
	b.create("public/logs/live.log", map[string]any{"storageType": "s3", "expires": b.exp, "contentType": "text/plain"})
}

func TestListArtifacts(t *testing.T) {
	a := newArtifactEnv(t)
	var names []string
	for _, n := range []string{"public/e", "public/a", "private/z", "public/c", "public/b"} {
		a.create(n, map[string]any{"storageType": "reference", "expires": a.exp, "url": "https://example.com/" + n, "contentType": "text/plain"})
		names = append(names, n)
	}
	slices.Sort(names)
	for _, base := range []string{runPath(a.taskID, 0, "/artifacts"), "/task/" + a.taskID + "/artifacts"} {
		var got []string
		token := ""
		for pages := 0; ; pages++ {
			if pages > 5 {
				t.Fatal("pagination does not end")
			}
			q := url.Values{"limit": {"2"}}
			if token != "" {
				q.Set("continuationToken", token)
			}
			var page listArtifactsResponse
			a.call("GET", base+"?"+q.Encode(), nil, nil, 200, "queue/v1/list-artifacts-response.json", &page)
			if len(page.Artifacts) > 2 {
				t.Fatalf("page of %d artifacts with limit=2", len(page.Artifacts))
			}
			for _, art := range page.Artifacts {
				got = append(got, art.Name)
				if art.StorageType != "reference" || art.ContentType != "text/plain" || art.Expires != a.exp {
					t.Errorf("listed artifact %+v", art)
				}
			}
			if page.ContinuationToken == "" {
				break
			}
			token = page.ContinuationToken
		}
		if !slices.Equal(got, names) {
			t.Errorf("%s listed %v, want %v", base, got, names)
		}
	}
	var all listArtifactsResponse
	a.call("GET", "/task/"+a.taskID+"/artifacts", nil, nil, 200, "queue/v1/list-artifacts-response.json", &all)
	if len(all.Artifacts) != len(names) || all.ContinuationToken != "" {
		t.Errorf("unpaginated list = %+v", all)
	}
	a.callErr("GET", runPath(a.taskID, 1, "/artifacts"), nil, nil, codeResourceNotFound)
	a.callErr("GET", runPath(a.taskID, 0, "/artifacts?limit=x"), nil, nil, codeInvalidRequestArguments)
}
