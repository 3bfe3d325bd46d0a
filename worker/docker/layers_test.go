package docker_test

import (
	"os"
	"slices"
	"testing"

	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
)

// InspectLayers names the container's own layer first, then its image's,
// all existing directories on overlay2, and every place something else is
// mounted: the binds and what the daemon mounts itself.
func TestInspectLayers(t *testing.T) {
	c := dockertest.Require(t)
	bind := t.TempDir()
	id := create(t, c, docker.ContainerSpec{Cmd: []string{"true"}, Binds: []string{bind + ":/cache/dir"}})
	got, err := c.InspectLayers(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if got.Driver == "" {
		t.Fatal("no storage driver")
	}
	for _, m := range []string{"/cache/dir", "/etc/hosts", "/proc"} {
		if !slices.Contains(got.MountPoints, m) {
			t.Errorf("mount points %v lack %s", got.MountPoints, m)
		}
	}
	if got.Driver != "overlay2" {
		if got.Layers != nil {
			t.Errorf("layers %v for driver %s", got.Layers, got.Driver)
		}
		return
	}
	if len(got.Layers) < 2 {
		t.Fatalf("layers %v: want the container's and its image's", got.Layers)
	}
	for _, l := range got.Layers {
		if st, err := os.Stat(l); err != nil || !st.IsDir() {
			t.Errorf("layer %s: %v", l, err)
		}
	}
	if _, err := c.InspectLayers(t.Context(), "no-such-container"); err == nil {
		t.Error("no error for a missing container")
	}
}
