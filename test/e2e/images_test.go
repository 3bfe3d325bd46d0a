package e2e

// Ports of docker-worker's pull_image_test, registry_auth_test and the
// task-image part of chain_of_trust: task images made from the test image
// with `docker save`, published as artifacts of earlier tasks on the
// embedded queue and loaded by the worker into the real dockerd.

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"go.dockerworker.dev/docker-worker/features/featuretest"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	chainoftrust "go.dockerworker.dev/docker-worker/features/chainOfTrust"
	imagefeature "go.dockerworker.dev/docker-worker/features/image"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
	"go.dockerworker.dev/docker-worker/worker/localqueue"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// savedImage is `docker save` of the test image, made once.
var savedImage = struct {
	once sync.Once
	tar  []byte
	id   string
	err  error
}{}

// testImageArchive returns the test image as a `docker save` archive and
// its image ID.
func testImageArchive(t *testing.T) ([]byte, string) {
	t.Helper()
	dc := dockertest.Require(t)
	savedImage.once.Do(func() {
		ctx := context.Background()
		api, err := client.New(client.FromEnv)
		if err != nil {
			savedImage.err = err
			return
		}
		defer api.Close()
		if _, err := api.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
			savedImage.err = err
			return
		}
		rc, err := api.ImageSave(ctx, []string{image})
		if err != nil {
			savedImage.err = err
			return
		}
		defer rc.Close()
		savedImage.tar, savedImage.err = io.ReadAll(rc)
		if savedImage.err == nil {
			cfg, err := dc.InspectImage(ctx, image)
			savedImage.id, savedImage.err = cfg.ID, err
		}
	})
	if savedImage.err != nil {
		t.Fatalf("docker save %s: %v", image, savedImage.err)
	}
	return savedImage.tar, savedImage.id
}

// variantArchive rewrites a `docker save` archive of the test image into
// one of another image, named repoTag, whose configuration has
// VARIANT=<variant> in its environment (same layers, another image ID).
func variantArchive(t *testing.T, archive []byte, repoTag, variant string) []byte {
	t.Helper()
	files := map[string][]byte{}
	var order []*tar.Header
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = b
		order = append(order, h)
	}
	var manifest []map[string]any
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil || len(manifest) != 1 {
		t.Fatalf("manifest.json of the saved image: %v (%d images)", err, len(manifest))
	}
	var cfg map[string]any
	if err := json.Unmarshal(files[manifest[0]["Config"].(string)], &cfg); err != nil {
		t.Fatal(err)
	}
	c := cfg["config"].(map[string]any)
	env, _ := c["Env"].([]any)
	c["Env"] = append(env, "VARIANT="+variant)
	raw, _ := json.Marshal(cfg)
	sum := sha256.Sum256(raw)
	cfgName := hex.EncodeToString(sum[:]) + ".json"
	manifest[0]["Config"] = cfgName
	manifest[0]["RepoTags"] = []string{repoTag}
	man, _ := json.Marshal(manifest)

	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	write := func(name string, b []byte) {
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b)), ModTime: time.Unix(0, 0)})
		tw.Write(b)
	}
	for _, h := range order {
		switch h.Name {
		case "manifest.json", "repositories", "index.json":
			continue
		}
		h2 := *h
		tw.WriteHeader(&h2)
		tw.Write(files[h.Name])
	}
	write(cfgName, raw)
	write("manifest.json", man)
	tw.Close()
	return out.Bytes()
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// published is one artifact of a holder task.
type published struct {
	name     string
	body     []byte
	encoding string // Content-Encoding it is stored (and served) with
}

// publish creates a task holding the artifacts and completes it, the way a
// worker would: claimed (under another worker type), artifacts created
// and uploaded with the run's credentials, reported completed. routes are
// the task's routes (index.<namespace> indexes it).
func (q *queueEnv) publish(t *testing.T, routes []string, arts ...published) string {
	t.Helper()
	ctx := t.Context()
	holder := q.workerConfig("image-holder-" + strings.ToLower(sha256Hex([]byte(t.Name()))[:8]))
	def := newTask(holder, shell("true", 60))
	if routes != nil {
		def["routes"] = routes
	}
	id := q.create(t, def)
	resp, err := q.admin.ClaimWork(ctx, holder.ProvisionerID+"/"+holder.WorkerType, tc.ClaimWorkRequest{Tasks: 1, WorkerGroup: "g", WorkerID: "holder"})
	if err != nil || len(resp.Tasks) != 1 {
		t.Fatalf("claim the image holder: %v", err)
	}
	run := q.admin.WithCredentials(resp.Tasks[0].Credentials)
	for _, a := range arts {
		ar, err := run.CreateArtifact(ctx, id, 0, a.name, tc.S3Artifact(resp.Tasks[0].Task.Expires, "application/x-tar"))
		if err != nil {
			t.Fatalf("create artifact %s: %v", a.name, err)
		}
		open := func(context.Context) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(a.body)), nil }
		if err := run.PutArtifact(ctx, ar.PutURL, open, int64(len(a.body)), "application/x-tar", a.encoding); err != nil {
			t.Fatalf("upload artifact %s: %v", a.name, err)
		}
	}
	if _, err := run.ReportCompleted(ctx, id, 0); err != nil {
		t.Fatalf("report completed: %v", err)
	}
	return id
}

// forgetArtifactImage removes what loading taskID's artifact path left in
// Docker (both its tags), when the test ends.
func forgetArtifactImage(t *testing.T, dc *docker.Client, taskID, path string) {
	t.Helper()
	t.Cleanup(func() {
		ctx := context.Background()
		repo := imagefeature.ArtifactRepo(taskID, path)
		tags, _ := dc.ListTags(ctx, repo)
		for _, ref := range tags {
			if !strings.Contains(ref, ":") {
				ref = repo + ":" + ref
			}
			if err := dc.RemoveImage(ctx, ref); err != nil {
				t.Logf("remove %s: %v", ref, err)
			}
		}
	})
}

func taskImagePayload(taskID, path, script string) map[string]any {
	p := shell(script, 60)
	p["image"] = map[string]any{"type": "task-image", "taskId": taskID, "path": path}
	return p
}

func indexedImagePayload(namespace, path, script string) map[string]any {
	p := shell(script, 60)
	p["image"] = map[string]any{"type": "indexed-image", "namespace": namespace, "path": path}
	return p
}

// pull_image_test: public task images in every format (one also served
// gzip-encoded), each loaded from the stream and run.
func TestTaskImageFormats(t *testing.T) {
	archive, id := testImageArchive(t)
	dc := dockertest.Require(t)
	q := startQueue(t, nil)
	cfg := q.workerConfig("task-image-formats")
	startWorker(t, q, cfg)
	arts := []published{
		{name: "public/image.tar", body: archive},
		{name: "public/gzipped/image.tar", body: featuretest.Gzip(archive), encoding: "gzip"},
		{name: "public/image.tar.gz", body: featuretest.Gzip(archive)},
		{name: "public/image.tar.lz4", body: featuretest.LZ4(archive)},
		{name: "public/image.tar.zst", body: featuretest.Zstd(archive)},
	}
	holder := q.publish(t, nil, arts...)
	for _, a := range arts {
		t.Run(a.name, func(t *testing.T) {
			forgetArtifactImage(t, dc, holder, a.name)
			task := q.create(t, newTask(cfg, taskImagePayload(holder, a.name, "echo ran from $0")))
			wantState(t, q.waitRun(t, task, 0, 2*time.Minute), 0, tc.StateCompleted, "completed")
			mustContain(t, q.logOf(t, task, 0, ""),
				`Downloading artifact "`+a.name+`" from task ID: `+holder+".",
				"Image '"+a.name+"' from task '"+holder+"' loaded.  Using image ID "+id+".",
				"ran from /bin/sh")
		})
	}
}

// pull_image_test: a private task image needs queue:get-artifact:<path>;
// without it the task fails before anything is downloaded. A missing
// artifact fails the task (a missing registry image: TestImagePull).
func TestTaskImageScopesAndMissing(t *testing.T) {
	archive, id := testImageArchive(t)
	dc := dockertest.Require(t)
	q := startQueue(t, nil)
	cfg := q.workerConfig("task-image-scopes")
	startWorker(t, q, cfg)
	const private = "private/docker-worker-tests/image.tar"
	holder := q.publish(t, nil, published{name: private, body: archive})
	forgetArtifactImage(t, dc, holder, private)

	def := newTask(cfg, taskImagePayload(holder, private, "true"))
	def["scopes"] = []string{"queue:get-artifact:private/docker-worker-tests/*"}
	task := q.create(t, def)
	wantState(t, q.waitRun(t, task, 0, 2*time.Minute), 0, tc.StateCompleted, "completed")
	mustContain(t, q.logOf(t, task, 0, ""), "Using image ID "+id+".")

	def = newTask(cfg, taskImagePayload(holder, private, "true"))
	def["scopes"] = []string{"queue:get-artifact:public/*"}
	task = q.create(t, def)
	wantState(t, q.waitRun(t, task, 0, 2*time.Minute), 0, tc.StateFailed, "failed")
	mustContain(t, q.logOf(t, task, 0, ""),
		`Not authorized to use {"type":"task-image","taskId":"`+holder+`","path":"`+private+`"}.  Ensure that the task scopes are correctly defined in the task definition`)

	task = q.create(t, newTask(cfg, taskImagePayload(holder, "public/absent.tar", "true")))
	wantState(t, q.waitRun(t, task, 0, 2*time.Minute), 0, tc.StateFailed, "failed")
	mustContain(t, q.logOf(t, task, 0, ""), "[taskcluster:error] Pulling docker image has failed.", "404")

}

// Two archives naming the same image (the same RepoTags) are two task
// images: each task runs its own.
func TestTaskImagesWithOneName(t *testing.T) {
	archive, _ := testImageArchive(t)
	dc := dockertest.Require(t)
	q := startQueue(t, nil)
	cfg := q.workerConfig("task-image-same-name")
	startWorker(t, q, cfg)
	var holders []string
	for _, v := range []string{"one", "two"} {
		body := variantArchive(t, archive, "docker-worker-test/variant:latest", v)
		h := q.publish(t, nil, published{name: "public/image.tar", body: body})
		forgetArtifactImage(t, dc, h, "public/image.tar")
		holders = append(holders, h)
	}
	for i, v := range []string{"one", "two"} {
		task := q.create(t, newTask(cfg, taskImagePayload(holders[i], "public/image.tar", "echo variant=$VARIANT")))
		wantState(t, q.waitRun(t, task, 0, 2*time.Minute), 0, tc.StateCompleted, "completed")
		mustContain(t, q.logOf(t, task, 0, ""), "variant="+v+"\r\n")
	}
	if _, err := dc.InspectImage(t.Context(), "docker-worker-test/variant:latest"); err == nil {
		t.Error("the archives' own name was loaded")
	}
}

// countingQueue is an embedded queue whose getLatestArtifact requests are
// counted.
type countingQueue struct {
	*queueEnv
	mu     sync.Mutex
	counts map[string]int // by artifact path
}

func (c *countingQueue) downloads(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[name]
}

func startCountingQueue(t *testing.T) *countingQueue {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rootURL := "http://" + ln.Addr().String()
	q, err := localqueue.New(localqueue.Config{
		RootURL:        rootURL,
		DataDir:        t.TempDir(),
		Clients:        []localqueue.Client{{ClientID: adminID, AccessToken: adminToken, Scopes: []string{"*"}}},
		ClaimWait:      time.Second,
		ExpiryInterval: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	cq := &countingQueue{counts: map[string]int{}}
	next := q.Handler()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// getLatestArtifact: GET /api/queue/v1/task/<id>/artifacts/<name>
		p := strings.TrimPrefix(r.URL.Path, "/api/queue/v1/task/")
		if r.Method == http.MethodGet && p != r.URL.Path {
			if _, name, ok := strings.Cut(p, "/artifacts/"); ok && !strings.Contains(p, "/runs/") {
				cq.mu.Lock()
				cq.counts[name]++
				cq.mu.Unlock()
			}
		}
		next.ServeHTTP(w, r)
	})}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = q.Run(ctx) })
	wg.Go(func() { _ = srv.Serve(ln) })
	t.Cleanup(func() {
		cancel()
		srv.Close()
		wg.Wait()
		q.Close()
	})
	cq.queueEnv = &queueEnv{
		t:       t,
		rootURL: rootURL,
		admin:   tc.New(tc.Config{RootURL: rootURL, Credentials: &tc.Credentials{ClientID: adminID, AccessToken: adminToken}}),
	}
	return cq
}

// A worker restarted between two tasks of one task image downloads it
// once: Docker's tags are all it needs to remember.
func TestTaskImageSurvivesRestart(t *testing.T) {
	archive, id := testImageArchive(t)
	dc := dockertest.Require(t)
	q := startCountingQueue(t)
	cfg := q.workerConfig("task-image-restart")
	const path = "public/image.tar.zst"
	holder := q.publish(t, nil, published{name: path, body: featuretest.Zstd(archive)})
	forgetArtifactImage(t, dc, holder, path)

	w := startWorker(t, q.queueEnv, cfg)
	task := q.create(t, newTask(cfg, taskImagePayload(holder, path, "true")))
	wantState(t, q.waitRun(t, task, 0, 2*time.Minute), 0, tc.StateCompleted, "completed")
	w.stop()
	if err := <-w.done; err != nil {
		t.Fatalf("first worker: %v", err)
	}
	w.done <- nil

	startWorker(t, q.queueEnv, cfg)
	task = q.create(t, newTask(cfg, taskImagePayload(holder, path, "true")))
	wantState(t, q.waitRun(t, task, 0, 2*time.Minute), 0, tc.StateCompleted, "completed")
	log := q.logOf(t, task, 0, "")
	mustContain(t, log, "Image '"+path+"' from task '"+holder+"' loaded.  Using image ID "+id+".")
	if strings.Contains(log, "Downloading artifact") {
		t.Errorf("the restarted worker downloaded the image again:\n%s", log)
	}
	if n := q.downloads(path); n != 1 {
		t.Errorf("%d downloads of %s, want 1", n, path)
	}
}

// chain_of_trust with a task image: the document records the loaded
// image's ID and the artifact's hash as docker-worker did.
func TestChainOfTrustTaskImage(t *testing.T) {
	archive, id := testImageArchive(t)
	dc := dockertest.Require(t)
	q := startQueue(t, nil)
	cfg := q.workerConfig("cot-task-image")
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Ed25519SigningKeyLocation = filepath.Join(t.TempDir(), "cot.key")
	os.WriteFile(cfg.Ed25519SigningKeyLocation, []byte(base64.StdEncoding.EncodeToString(priv)+"\n"), 0o600)
	startWorker(t, q, cfg)
	body := featuretest.LZ4(archive)
	holder := q.publish(t, nil, published{name: "public/image.tar.lz4", body: body})
	forgetArtifactImage(t, dc, holder, "public/image.tar.lz4")

	p := taskImagePayload(holder, "public/image.tar.lz4", "true")
	p["features"] = map[string]bool{"chainOfTrust": true}
	task := q.create(t, newTask(cfg, p))
	wantState(t, q.waitRun(t, task, 0, 2*time.Minute), 0, tc.StateCompleted, "completed")
	var doc, sig bytes.Buffer
	if _, err := q.admin.Download(t.Context(), q.admin.ArtifactURL(task, 0, chainoftrust.DocumentName), &doc); err != nil {
		t.Fatal(err)
	}
	if _, err := q.admin.Download(t.Context(), q.admin.ArtifactURL(task, 0, chainoftrust.SignatureName), &sig); err != nil {
		t.Fatal(err)
	}
	d, err := chainoftrust.Verify(doc.Bytes(), sig.Bytes(), pub)
	if err != nil {
		t.Fatal(err)
	}
	if d.Environment.ImageHash != id || d.Environment.ImageArtifactHash != "sha256:"+sha256Hex(body) {
		t.Errorf("environment %+v, want imageHash %s and imageArtifactHash sha256:%s", d.Environment, id, sha256Hex(body))
	}
}

// pull_image_test: public and private indexed images (the namespace is
// resolved with the task's scopes, which must allow findTask there; a
// private artifact needs its scope), and a namespace that indexes nothing.
func TestIndexedImage(t *testing.T) {
	archive, id := testImageArchive(t)
	dc := dockertest.Require(t)
	q := startQueue(t, nil)
	cfg := q.workerConfig("indexed-image")
	startWorker(t, q, cfg)
	ns := "garbage.docker-worker-tests.docker-images-" + strings.ToLower(cfg.WorkerID)
	const private = "private/docker-worker-tests/image.tar"
	holder := q.publish(t, []string{"index." + ns},
		published{name: "public/image.tar.zst", body: featuretest.Zstd(archive)},
		published{name: private, body: archive})
	forgetArtifactImage(t, dc, holder, "public/image.tar.zst")
	forgetArtifactImage(t, dc, holder, private)

	find := "index:find-task:" + ns
	for _, tt := range []struct {
		name, ns, path string
		scopes         []string
		wantState      string
		wantLog        []string
	}{
		{"public", ns, "public/image.tar.zst", []string{find}, tc.StateCompleted,
			[]string{"Image 'public/image.tar.zst' from task '" + holder + "' loaded.  Using image ID " + id + ".", "indexed ran"}},
		{"private", ns, private, []string{find, "queue:get-artifact:" + private}, tc.StateCompleted,
			[]string{"Image '" + private + "' from task '" + holder + "' loaded.  Using image ID " + id + ".", "indexed ran"}},
		{"private without the scope", ns, private, []string{find}, tc.StateFailed,
			[]string{`Not authorized to use {"type":"indexed-image","namespace":"` + ns + `","path":"` + private + `"}.  Ensure that the task scopes are correctly defined in the task definition`}},
		{"the task may not look the namespace up", ns, "public/image.tar.zst", []string{"index:find-task:other.*"}, tc.StateFailed,
			[]string{`[taskcluster:error] Could not find a task associated with "` + ns + `" namespace.`, `"` + find + `"`}},
		{"nothing indexed", ns + ".absent", "public/image.tar.zst", []string{"index:find-task:*"}, tc.StateFailed,
			[]string{`[taskcluster:error] Could not find a task associated with "` + ns + `.absent" namespace.`, "404"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			def := newTask(cfg, indexedImagePayload(tt.ns, tt.path, "echo indexed ran"))
			if tt.scopes != nil {
				def["scopes"] = tt.scopes
			}
			task := q.create(t, def)
			st := q.waitRun(t, task, 0, 2*time.Minute)
			log := q.logOf(t, task, 0, "")
			mustContain(t, log, tt.wantLog...)
			if st.Runs[0].State != tt.wantState {
				t.Errorf("run 0 %s, want %s; log:\n%s", st.Runs[0].State, tt.wantState, log)
			}
		})
	}
}
