package docker_test

import (
	"archive/tar"
	"errors"
	"io"
	"io/fs"
	"testing"

	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
)

func TestCopyFrom(t *testing.T) {
	c := dockertest.Require(t)
	ctx := t.Context()
	id, err := c.Create(ctx, docker.ContainerSpec{Image: dockertest.Image, Cmd: []string{"/bin/sh", "-c", "mkdir -p /out/sub && echo hi > /out/sub/a.txt && echo rel > rel.txt"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Remove(ctx, id) })
	if err := c.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	if code, err := c.Wait(ctx, id); err != nil || code != 0 {
		t.Fatalf("wait: %d %v", code, err)
	}

	rc, dir, err := c.CopyFrom(ctx, id, "/out")
	if err != nil || !dir {
		t.Fatalf("CopyFrom(/out) = dir %v, %v", dir, err)
	}
	names := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		names[h.Name] = string(b)
	}
	rc.Close()
	if names["out/sub/a.txt"] != "hi\n" {
		t.Errorf("tar entries %v", names)
	}

	rc, dir, err = c.CopyFrom(ctx, id, "rel.txt")
	if err != nil || dir {
		t.Fatalf("CopyFrom(rel.txt) = dir %v, %v", dir, err)
	}
	rc.Close()

	if _, _, err := c.CopyFrom(ctx, id, "/no/such/file"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing path: %v", err)
	}
}
