package docker_test

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
)

// TestCommitSaveLoad commits a container that wrote a file, saves the
// image, loads the archive back under another name and reads the file in a
// container of the loaded image.
func TestCommitSaveLoad(t *testing.T) {
	c := dockertest.Require(t)
	ctx := timeout(t, 2*time.Minute)
	id := create(t, c, docker.ContainerSpec{Cmd: []string{"sh", "-c", "mkdir -p /tmp && echo committed > /tmp/commit.txt"}})
	if err := c.Start(ctx, id); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if code, err := c.Wait(ctx, id); err != nil || code != 0 {
		t.Fatalf("Wait: %d, %v", code, err)
	}
	const ref = "docker-worker-test/commit-save:test"
	imageID, err := c.Commit(ctx, id, ref)
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if imageID == "" {
		t.Fatal("Commit returned no image ID")
	}
	removeImage(t, c, ref)

	stream, err := c.SaveImage(ctx, ref)
	if err != nil {
		t.Fatalf("SaveImage: %v", err)
	}
	archive, err := io.ReadAll(stream)
	stream.Close()
	if err != nil {
		t.Fatalf("reading the saved image: %v", err)
	}

	const loaded = "docker-worker-test/commit-save-loaded:test"
	removeImage(t, c, loaded)
	if _, err := c.LoadImage(ctx, bytes.NewReader(archive), loaded); err != nil {
		t.Fatalf("LoadImage: %v", err)
	}
	out, code := run(t, c, docker.ContainerSpec{Image: loaded, Cmd: []string{"cat", "/tmp/commit.txt"}})
	if code != 0 || out != "committed\n" {
		t.Fatalf("container of the loaded image: exit %d, output %q; want 0, %q", code, out, "committed\n")
	}
}

func TestCommitMissingContainer(t *testing.T) {
	c := dockertest.Require(t)
	if _, err := c.Commit(t.Context(), "no-such-container-docker-worker", "docker-worker-test/never:latest"); err == nil {
		t.Fatal("Commit of a missing container succeeded")
	}
}

func TestSaveMissingImage(t *testing.T) {
	c := dockertest.Require(t)
	stream, err := c.SaveImage(t.Context(), "docker-worker-test/no-such-image:never")
	if err == nil {
		// Some daemons report the error in the stream.
		_, err = io.ReadAll(stream)
		stream.Close()
		if err == nil {
			t.Skip("the daemon saved a missing image as an empty archive")
		}
	}
}

// removeImage removes ref when the test ends.
func removeImage(t *testing.T, c *docker.Client, ref string) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 30*time.Second)
		defer cancel()
		if err := c.RemoveImage(ctx, ref); err != nil {
			t.Errorf("RemoveImage %s: %v", ref, err)
		}
	})
}
