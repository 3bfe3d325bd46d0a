package e2e

// Port of docker-worker's docker_save_test: the dockerSave feature on a
// real dockerd, through a worker built as the binary builds it.

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	dockersave "go.dockerworker.dev/docker-worker/features/dockerSave"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// run dockerSave, then check contents: the task writes a file; the
// public/dockerImage.tar artifact, loaded back into Docker, has it; the
// cache the task used comes back as public/cache/<name>.tar; the committed
// image is gone from the worker's daemon.
func TestDockerSave(t *testing.T) {
	dc := dockertest.Require(t)
	q := startQueue(t, nil)
	cfg := cacheConfig(t, q, "docker-save")
	startWorker(t, q, cfg)
	const cacheName = "docker-worker-dockersave-cache"
	p := shell(`mkdir -p /tmp && echo testString > /tmp/test.log && echo cached > /saved-cache/in-cache.txt`, 60)
	p["features"] = map[string]bool{"dockerSave": true}
	p["cache"] = map[string]string{cacheName: "/saved-cache"}
	def := withScopes(newTask(cfg, p), "docker-worker:cache:"+cacheName)
	taskExpires, err := time.Parse(time.RFC3339, def["expires"].(string))
	if err != nil {
		t.Fatal(err)
	}
	id := q.create(t, def)
	wantState(t, q.waitRun(t, id, 0, 3*time.Minute), 0, tc.StateCompleted, "completed")

	arts := q.artifacts(t, id, 0)
	for _, name := range []string{dockersave.ImageArtifact, "public/cache/" + cacheName + ".tar"} {
		a, ok := arts[name]
		if !ok {
			t.Fatalf("no artifact %s (have %v)", name, arts)
		}
		if a.ContentType != "application/x-tar" {
			t.Errorf("%s: content type %q", name, a.ContentType)
		}
		// The task expires in a day, before the default 7 days.
		if !a.Expires.Equal(taskExpires) {
			t.Errorf("%s: expires %v, want the task's expiry %v", name, a.Expires, taskExpires)
		}
	}
	ref := dockersave.ImageRef(id, 0)
	if _, err := dc.InspectImage(t.Context(), ref); err == nil {
		t.Errorf("the committed image %s is still present", ref)
	}

	var archive bytes.Buffer
	if _, err := q.admin.Download(t.Context(), q.admin.ArtifactURL(id, 0, dockersave.ImageArtifact), &archive); err != nil {
		t.Fatalf("download the image: %v", err)
	}
	loaded := "docker-worker-test/docker-save-loaded:" + strings.ToLower(id[:8])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 30*time.Second)
		defer cancel()
		if err := dc.RemoveImage(ctx, loaded); err != nil {
			t.Errorf("remove %s: %v", loaded, err)
		}
	})
	if _, err := dc.LoadImage(t.Context(), &archive, loaded); err != nil {
		t.Fatalf("load the saved image: %v", err)
	}
	if out := runIn(t, dc, loaded, "cat", "/tmp/test.log"); out != "testString\n" {
		t.Errorf("/tmp/test.log in the saved image: %q, want %q", out, "testString\n")
	}

	var cacheTar bytes.Buffer
	if _, err := q.admin.Download(t.Context(), q.admin.ArtifactURL(id, 0, "public/cache/"+cacheName+".tar"), &cacheTar); err != nil {
		t.Fatalf("download the cache: %v", err)
	}
	files := map[string]string{}
	tr := tar.NewReader(&cacheTar)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("cache archive: %v", err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = string(b)
	}
	if files["in-cache.txt"] != "cached\n" {
		t.Errorf("cache archive files %v, want in-cache.txt = %q", files, "cached\n")
	}
}

// runIn runs a command in a fresh container of image and returns its
// output.
func runIn(t *testing.T, dc *docker.Client, image string, cmd ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	id, err := dc.Create(ctx, docker.ContainerSpec{Image: image, Cmd: cmd})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	defer func() {
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer rcancel()
		dc.Remove(rctx, id)
	}()
	stream, err := dc.Attach(ctx, id)
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	defer stream.Close()
	if err := dc.Start(ctx, id); err != nil {
		t.Fatalf("start: %v", err)
	}
	out, _ := io.ReadAll(stream)
	if code, err := dc.Wait(ctx, id); err != nil || code != 0 {
		t.Fatalf("wait: exit %d, %v (output %q)", code, err, out)
	}
	return string(out)
}
