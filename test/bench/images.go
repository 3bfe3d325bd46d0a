package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	imagefeature "go.dockerworker.dev/docker-worker/features/image"
	"go.dockerworker.dev/docker-worker/worker/slugid"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// taskImageSample holds the task-image rows' samples.
type taskImageSample struct {
	ArtifactBytes int64 `json:"artifact_bytes"`
	// FirstWorkerMs: claim → container started for a task whose task
	// image is not loaded yet; FirstPipelineMs: the same artifact through
	// `curl | zstd -d | docker load`, interleaved.
	FirstWorkerMs   []float64 `json:"first_worker_ms"`
	FirstPipelineMs []float64 `json:"first_pipeline_ms"`
	// FirstImageMs is the image phase alone of the first uses (download,
	// decompress, load), without creating and starting the container.
	FirstImageMs []float64 `json:"first_image_ms"`
	// CachedWorkerMs: claim → started on a second use; NamedWorkerMs: the
	// same for a task naming a local image.
	CachedWorkerMs []float64 `json:"cached_worker_ms"`
	NamedWorkerMs  []float64 `json:"named_worker_ms"`
	// ConcurrentBytes: artifact bytes the queue served while 4 tasks
	// started at once on the uncached image.
	ConcurrentBytes int64 `json:"concurrent_bytes"`
}

// taskImage measures a task image's first use against the shell pipeline
// a user would run, its second use against a named local image, and what
// four concurrent first uses download.
func (e *env) taskImage(ctx context.Context, r *results) error {
	if e.o.taskImageMiB <= 0 {
		return errNotMeasured("skipped (-task-image-mib 0)")
	}
	for _, tool := range []string{"zstd", "curl", "docker"} {
		if _, err := exec.LookPath(tool); err != nil {
			return errNotMeasured(tool + " is not installed (test/setup-env.sh installs it)")
		}
	}
	dir := filepath.Join(e.dir, "task-image")
	zst, err := buildImageArchive(ctx, dir, e.o.image, e.o.taskImageMiB)
	if err != nil {
		return err
	}
	const path = "public/big.tar.zst"
	holder, size, err := e.publishFile(ctx, path, zst)
	if err != nil {
		return err
	}
	os.Remove(zst)
	s := &r.Samples.TaskImage
	s.ArtifactBytes = size

	proxy, served := countingProxy(e.rootURL)
	defer proxy.Close()
	w, err := e.startWorkerAt(ctx, proxy.URL, 4, "")
	if err != nil {
		return err
	}
	defer w.stop()
	repo := imagefeature.ArtifactRepo(holder, path)
	forget := func() error { return removeRepo(ctx, repo) }
	taskImage := map[string]any{"image": map[string]any{"type": "task-image", "taskId": holder, "path": path}, "command": []string{"true"}}
	var lastImageMs float64
	untilStarted := func(extra map[string]any) (float64, error) {
		w.takeTimings()
		id, err := e.createTaskPayload(ctx, w, extra, 600)
		if err != nil {
			return 0, err
		}
		run, err := e.waitResolved(ctx, id, 10*time.Minute)
		if err != nil {
			return 0, err
		}
		if run.State != tc.StateCompleted {
			return 0, fmt.Errorf("task %s: %s/%s", id, run.State, run.ReasonResolved)
		}
		ts := w.waitTimings(time.Minute) // logged after the container's removal
		if len(ts) == 0 {
			return 0, fmt.Errorf("task %s: no timings record", id)
		}
		t := ts[len(ts)-1]
		lastImageMs = t["imageMs"]
		return t["imageMs"] + t["createdMs"] + t["startedMs"], nil
	}
	artifactURL := proxy.URL + "/api/queue/v1/task/" + holder + "/artifacts/" + url.PathEscape(path)
	for range e.o.taskImageRounds {
		if err := forget(); err != nil {
			return err
		}
		ms, err := loadPipeline(ctx, artifactURL)
		if err != nil {
			return err
		}
		s.FirstPipelineMs = append(s.FirstPipelineMs, ms)
		if err := forget(); err != nil {
			return err
		}
		first, err := untilStarted(taskImage)
		if err != nil {
			return err
		}
		s.FirstImageMs = append(s.FirstImageMs, lastImageMs)
		cached, err := untilStarted(taskImage)
		if err != nil {
			return err
		}
		named, err := untilStarted(map[string]any{"command": []string{"true"}})
		if err != nil {
			return err
		}
		s.FirstWorkerMs = append(s.FirstWorkerMs, first)
		s.CachedWorkerMs = append(s.CachedWorkerMs, cached)
		s.NamedWorkerMs = append(s.NamedWorkerMs, named)
	}

	if err := forget(); err != nil {
		return err
	}
	served.Store(0)
	var ids []string
	for range 4 {
		id, err := e.createTaskPayload(ctx, w, taskImage, 600)
		if err != nil {
			return err
		}
		ids = append(ids, id)
	}
	for _, id := range ids {
		run, err := e.waitResolved(ctx, id, 10*time.Minute)
		if err != nil {
			return err
		}
		if run.State != tc.StateCompleted {
			return fmt.Errorf("task %s: %s/%s", id, run.State, run.ReasonResolved)
		}
	}
	s.ConcurrentBytes = served.Load()
	return forget()
}

// buildImageArchive builds an image of base plus mib MiB of random data
// with the classic builder and writes its `docker save` stream, zstd
// compressed, to a file it returns; the image is removed again.
func buildImageArchive(ctx context.Context, dir, base string, mib int) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	blob, err := os.Create(filepath.Join(dir, "blob"))
	if err != nil {
		return "", err
	}
	_, err = io.CopyN(blob, rand.Reader, int64(mib)<<20)
	if err = errors.Join(err, blob.Close()); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM "+base+"\nCOPY blob /blob\n"), 0o600); err != nil {
		return "", err
	}
	tag := "docker-worker-bench/task-image:" + strings.ToLower(slugid.Nice()[:10])
	build := exec.CommandContext(ctx, "docker", "build", "-q", "-t", tag, dir)
	build.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("docker build: %v: %s", err, out)
	}
	os.Remove(filepath.Join(dir, "blob"))
	zst := filepath.Join(dir, "image.tar.zst")
	save := exec.CommandContext(ctx, "sh", "-c", `docker save "$1" | zstd -q -T0 -3 -f -o "$2"`, "sh", tag, zst)
	if out, err := save.CombinedOutput(); err != nil {
		return "", fmt.Errorf("docker save | zstd: %v: %s", err, out)
	}
	if out, err := exec.CommandContext(ctx, "docker", "rmi", tag).CombinedOutput(); err != nil {
		return "", fmt.Errorf("docker rmi %s: %v: %s", tag, err, out)
	}
	return zst, nil
}

// publishFile makes a completed task holding the file at path as a public
// artifact, the way a worker would (claim under another worker type,
// upload with the run's credentials, report completed).
func (e *env) publishFile(ctx context.Context, name, path string) (string, int64, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", 0, err
	}
	holder := &workerProc{workerType: "bench-holder-" + strings.ToLower(slugid.Nice()[:6])}
	id, err := e.createTaskPayload(ctx, holder, map[string]any{"command": []string{"true"}}, 60)
	if err != nil {
		return "", 0, err
	}
	claim, err := e.client.ClaimWork(ctx, "bench/"+holder.workerType, tc.ClaimWorkRequest{Tasks: 1, WorkerGroup: "bench", WorkerID: "holder"})
	if err != nil || len(claim.Tasks) != 1 {
		return "", 0, fmt.Errorf("claim the image holder: %v", err)
	}
	run := e.client.WithCredentials(claim.Tasks[0].Credentials)
	art, err := run.CreateArtifact(ctx, id, 0, name, tc.S3Artifact(claim.Tasks[0].Task.Expires, "application/zstd"))
	if err != nil {
		return "", 0, err
	}
	open := func(context.Context) (io.ReadCloser, error) { return os.Open(path) }
	if err := run.PutArtifact(ctx, art.PutURL, open, st.Size(), "application/zstd", ""); err != nil {
		return "", 0, err
	}
	if _, err := run.ReportCompleted(ctx, id, 0); err != nil {
		return "", 0, err
	}
	return id, st.Size(), nil
}

// countingProxy serves the queue at rootURL through a loopback proxy that
// counts the bytes of stored artifacts it serves; the queue's redirects to
// its storage are rewritten to go through the proxy too.
func countingProxy(rootURL string) (*httptest.Server, *atomic.Int64) {
	target, _ := url.Parse(rootURL)
	var served atomic.Int64
	rp := httputil.NewSingleHostReverseProxy(target)
	var self string
	rp.ModifyResponse = func(resp *http.Response) error {
		if loc := resp.Header.Get("Location"); strings.HasPrefix(loc, rootURL) {
			resp.Header.Set("Location", self+strings.TrimPrefix(loc, rootURL))
		}
		if strings.Contains(resp.Request.URL.Path, "/_store/") {
			resp.Body = &countingBody{ReadCloser: resp.Body, n: &served}
		}
		return nil
	}
	srv := httptest.NewServer(rp)
	self = srv.URL
	return srv, &served
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// loadPipeline times `curl URL | zstd -d | docker load` and removes the
// image it loaded.
func loadPipeline(ctx context.Context, artifactURL string) (float64, error) {
	start := time.Now()
	out, err := exec.CommandContext(ctx, "bash", "-c", `set -o pipefail; curl -sfL "$1" | zstd -dq | docker load -q`, "bash", artifactURL).CombinedOutput()
	ms := float64(time.Since(start).Microseconds()) / 1000
	if err != nil {
		return 0, fmt.Errorf("curl | zstd -d | docker load: %v: %s", err, out)
	}
	loaded := strings.TrimSpace(string(out))
	loaded = strings.TrimPrefix(strings.TrimPrefix(loaded, "Loaded image ID: "), "Loaded image: ")
	if o, err := exec.CommandContext(ctx, "docker", "rmi", "-f", loaded).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("docker rmi %s: %v: %s", loaded, err, o)
	}
	return ms, nil
}

// removeRepo removes every tag of repository (a task image's two tags).
func removeRepo(ctx context.Context, repo string) error {
	out, err := exec.CommandContext(ctx, "docker", "images", "--format", "{{.Repository}}:{{.Tag}}", repo).Output()
	if err != nil {
		return fmt.Errorf("docker images %s: %w", repo, err)
	}
	for _, ref := range strings.Fields(string(out)) {
		if o, err := exec.CommandContext(ctx, "docker", "rmi", ref).CombinedOutput(); err != nil {
			return fmt.Errorf("docker rmi %s: %v: %s", ref, err, o)
		}
	}
	return nil
}
