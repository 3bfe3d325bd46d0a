package worker_test

// Runner-tier tests of the task image: task images published as artifacts
// on the embedded queue, loaded into the scripted Docker; scope refusals
// before anything is fetched.

import (
	"bytes"
	"compress/gzip"
	"context"
	"go.dockerworker.dev/docker-worker/features/featuretest"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/features/image"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockerfake"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// imageQueue is the image feature's queue over worker/tc, as worker/wiring
// builds it (which the core's tests may not import).
type imageQueue struct{ c *tc.Client }

func (q imageQueue) FindTask(ctx context.Context, creds features.Credentials, scopes []string, ns string) (string, error) {
	c := q.c.WithCredentials(tc.Credentials{ClientID: creds.ClientID, AccessToken: creds.AccessToken, Certificate: creds.Certificate, AuthorizedScopes: scopes})
	t, err := c.FindTask(ctx, ns)
	if err != nil {
		return "", err
	}
	return t.TaskID, nil
}

func (q imageQueue) OpenArtifact(ctx context.Context, creds *features.Credentials, taskID, name string) (*image.Download, error) {
	c := q.c
	if creds != nil {
		c = c.WithCredentials(tc.Credentials{ClientID: creds.ClientID, AccessToken: creds.AccessToken, Certificate: creds.Certificate})
	}
	b, err := c.Open(ctx, c.LatestArtifactURL(taskID, name))
	if err != nil {
		if s := tc.StatusCode(err); s >= 400 && s < 500 {
			return nil, image.Final(err)
		}
		return nil, err
	}
	return &image.Download{Body: b, ContentEncoding: b.ContentEncoding, Size: b.ContentLength}, nil
}

// publish makes a completed task (of another worker type, claimed by the
// test) holding artifact name with body, stored with contentEncoding.
func (e *env) publish(name string, body []byte, contentEncoding string) string {
	e.t.Helper()
	return e.publishRouted(nil, name, body, contentEncoding)
}

// publishRouted is publish for a task with routes.
func (e *env) publishRouted(routes []string, name string, body []byte, contentEncoding string) string {
	e.t.Helper()
	ctx := e.t.Context()
	p := payload(60, "true")
	id := e.createTaskFor("image-holder", p, nil, routes...)
	resp, err := e.admin.ClaimWork(ctx, e.cfg.ProvisionerID+"/image-holder", tc.ClaimWorkRequest{Tasks: 1, WorkerGroup: "g", WorkerID: "holder"})
	if err != nil || len(resp.Tasks) != 1 {
		e.t.Fatalf("claim the image holder: %v, %d claims", err, len(resp.Tasks))
	}
	run := e.admin.WithCredentials(resp.Tasks[0].Credentials)
	art, err := run.CreateArtifact(ctx, id, 0, name, tc.S3Artifact(resp.Tasks[0].Task.Expires, "application/x-tar"))
	if err != nil {
		e.t.Fatalf("create artifact: %v", err)
	}
	open := func(context.Context) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	if err := run.PutArtifact(ctx, art.PutURL, open, int64(len(body)), "application/x-tar", contentEncoding); err != nil {
		e.t.Fatalf("upload artifact: %v", err)
	}
	if _, err := run.ReportCompleted(ctx, id, 0); err != nil {
		e.t.Fatalf("report completed: %v", err)
	}
	return id
}

// downloads counts the getLatestArtifact requests for artifact name of
// any task.
func (e *env) downloads(name string) int {
	n := 0
	for _, r := range e.faults.requests("/artifacts/" + name) {
		if r.Method == http.MethodGet && !strings.Contains(r.Path, "/runs/") {
			n++
		}
	}
	return n
}

func taskImagePayload(taskID, path string) map[string]any {
	p := payload(60, "run")
	p["image"] = map[string]any{"type": "task-image", "taskId": taskID, "path": path}
	return p
}

func TestTaskImage(t *testing.T) {
	archive := dockerfake.ImageArchive("", docker.ImageConfig{Cmd: []string{"default"}})
	wantID, _ := (&dockerfake.Fake{}).LoadImage(t.Context(), bytes.NewReader(archive), "probe:latest")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(archive)
	zw.Close()

	for _, tt := range []struct {
		name, path string
		body       []byte
		encoding   string
		scopes     []string
		wantState  string
		wantLog    []string
		wantFetch  int
	}{
		{name: "public", path: "public/image.tar", body: archive, wantState: tc.StateCompleted, wantFetch: 1,
			wantLog: []string{"' loaded.  Using image ID " + wantID + "."}},
		{name: "public, served gzip-encoded", path: "public/image.tar", body: gz.Bytes(), encoding: "gzip", wantState: tc.StateCompleted, wantFetch: 1,
			wantLog: []string{"Using image ID " + wantID + "."}},
		{name: "private with the scope", path: "private/image.tar", body: archive, scopes: []string{"queue:get-artifact:private/*"},
			wantState: tc.StateCompleted, wantFetch: 1, wantLog: []string{"Using image ID " + wantID + "."}},
		{name: "private without the scope", path: "private/image.tar", body: archive, scopes: []string{"queue:get-artifact:public/*"},
			wantState: tc.StateFailed, wantFetch: 0, wantLog: []string{
				`Not authorized to use {"type":"task-image","taskId":"`,
				`"path":"private/image.tar"}.  Ensure that the task scopes are correctly defined in the task definition`}},
		{name: "two images", path: "public/two.tar", wantState: tc.StateFailed, wantFetch: 1,
			body:    dockerfake.ImageArchive("", docker.ImageConfig{Cmd: []string{"a"}}, docker.ImageConfig{Cmd: []string{"b"}}),
			wantLog: []string{"[taskcluster:error] Pulling docker image has failed.", "Image tarballs must only contain one image"}},
		{name: "wrong format", path: "public/image.tar.zst", body: archive, wantState: tc.StateFailed, wantFetch: 1,
			wantLog: []string{"[taskcluster:error] Pulling docker image has failed.", "zstd:"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := start(t, setup{config: func(c *config.Config) { c.DockerConfig.MaxAttempts = 3 }})
				holder := e.publish(tt.path, tt.body, tt.encoding)
				id := e.createTaskFor(e.cfg.WorkerType, taskImagePayload(holder, tt.path), tt.scopes)
				st := e.waitRun(id, 0)
				if got := st.Runs[0].State; got != tt.wantState {
					t.Errorf("run 0 %s, want %s", got, tt.wantState)
				}
				log, _ := e.taskLog(id, 0)
				for _, w := range tt.wantLog {
					if !strings.Contains(log, w) {
						t.Errorf("log lacks %q; log:\n%s", w, log)
					}
				}
				if n := e.downloads(tt.path); n != tt.wantFetch {
					t.Errorf("%d downloads, want %d", n, tt.wantFetch)
				}
				if tt.wantState == tc.StateCompleted {
					if c := e.docker.Containers(); len(c) != 1 || c[0].Spec.Image != wantID {
						t.Errorf("containers %+v, want one of image %s", c, wantID)
					}
				}
			})
		})
	}
}

// Two tasks of one task image, one after the other: one download, one
// load; and a registry image with configured credentials needs its scope.
func TestTaskImageReusedAndRegistryScope(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := start(t, setup{image: func(c *image.Config) {
			c.Registries = map[string]image.RegistryCredentials{"127.0.0.1:5001": {Username: "u", Password: "secret-password"}}
		}})
		archive := dockerfake.ImageArchive("", docker.ImageConfig{Cmd: []string{"default"}})
		holder := e.publish("public/image.tar.gz", featuretest.Gzip(archive), "")
		for range 2 {
			id := e.createTask(taskImagePayload(holder, "public/image.tar.gz"))
			if st := e.waitRun(id, 0); st.Runs[0].State != tc.StateCompleted {
				t.Fatalf("run %+v", st.Runs[0])
			}
		}
		if n, loads := e.downloads("public/image.tar.gz"), len(e.docker.Loads()); n != 1 || loads != 1 {
			t.Errorf("%d downloads and %d loads, want 1 and 1", n, loads)
		}

		const private = "127.0.0.1:5001/private/busybox"
		p := payload(60, "run")
		p["image"] = private
		id := e.createTask(p)
		if st := e.waitRun(id, 0); st.Runs[0].State != tc.StateFailed {
			t.Errorf("without the scope: run %+v", st.Runs[0])
		}
		log, _ := e.taskLog(id, 0)
		if !strings.Contains(log, `Not authorized to use "`+private+`".  Ensure that the task scopes are correctly defined in the task definition`) {
			t.Errorf("log:\n%s", log)
		}
		for _, pulled := range e.docker.Pulls() {
			if pulled == private {
				t.Error("pulled without the scope")
			}
		}
		id = e.createTaskFor(e.cfg.WorkerType, p, []string{"docker-worker:image:127.0.0.1:5001/*"})
		if st := e.waitRun(id, 0); st.Runs[0].State != tc.StateCompleted {
			t.Errorf("with the star scope: run %+v", st.Runs[0])
		}
		log, _ = e.taskLog(id, 0)
		if strings.Contains(log, "secret-password") {
			t.Error("the registry password reached the task log")
		}
	})
}

// An indexed image: the namespace is resolved with the task's scopes, on
// every task; the image is the indexed task's task image.
func TestIndexedImage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := start(t, setup{})
		archive := dockerfake.ImageArchive("", docker.ImageConfig{Cmd: []string{"default"}})
		const ns = "garbage.docker-worker-tests.docker-images"
		holder := e.publishRouted([]string{"index." + ns}, "public/image.tar.lz4", featuretest.LZ4(archive), "")
		p := payload(60, "run")
		p["image"] = map[string]any{"type": "indexed-image", "namespace": ns, "path": "public/image.tar.lz4"}
		for _, scopes := range [][]string{{"index:find-task:garbage.*"}, {"index:find-task:" + ns}} {
			id := e.createTaskFor(e.cfg.WorkerType, p, scopes)
			if st := e.waitRun(id, 0); st.Runs[0].State != tc.StateCompleted {
				log, _ := e.taskLog(id, 0)
				t.Fatalf("run %+v; log:\n%s", st.Runs[0], log)
			}
			log, _ := e.taskLog(id, 0)
			if want := "Image 'public/image.tar.lz4' from task '" + holder + "' loaded."; !strings.Contains(log, want) {
				t.Errorf("log lacks %q:\n%s", want, log)
			}
		}
		if n, loads := e.downloads("public/image.tar.lz4"), len(e.docker.Loads()); n != 1 || loads != 1 {
			t.Errorf("%d downloads and %d loads, want 1 and 1", n, loads)
		}

		id := e.createTaskFor(e.cfg.WorkerType, p, []string{"index:find-task:other"})
		if st := e.waitRun(id, 0); st.Runs[0].State != tc.StateFailed {
			t.Errorf("without index:find-task: run %+v", st.Runs[0])
		}
		log, _ := e.taskLog(id, 0)
		if want := `Could not find a task associated with "` + ns + `" namespace.`; !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	})
}
