package image

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/features/featuretest"
	"go.dockerworker.dev/docker-worker/schemas"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
)

// fakeDocker answers EnsureImage and InspectImage from fields.
type fakeDocker struct {
	id      string
	pullErr error
	cfg     docker.ImageConfig
	refs    []string
	policy  docker.PullPolicy
}

func (d *fakeDocker) EnsureImage(_ context.Context, ref string, progress io.Writer, p docker.PullPolicy) (string, error) {
	d.refs, d.policy = append(d.refs, ref), p
	io.WriteString(progress, "Pulling "+ref+"\n")
	return d.id, d.pullErr
}

func (d *fakeDocker) InspectImage(context.Context, string) (docker.ImageConfig, error) {
	return d.cfg, nil
}

func TestProvideImage(t *testing.T) {
	d := &fakeDocker{id: "sha256:abc", cfg: docker.ImageConfig{ID: "sha256:abc", Entrypoint: []string{"/init"}, Cmd: []string{"sh"}, WorkingDir: "/w", User: "u"}}
	policy := docker.PullPolicy{Attempts: 3}
	ft := &featuretest.Task{Pay: &schemas.Payload{Image: schemas.Image{Type: schemas.ImageTypeDockerImage, Name: "busybox:1"}}}
	tf, _ := New(d, policy).NewTask(ft)
	img, err := tf.(features.ImageProvider).ProvideImage(t.Context(), &features.ImageRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := features.Image{ID: "sha256:abc", Name: "busybox:1",
		Config: features.ImageConfig{Entrypoint: []string{"/init"}, Cmd: []string{"sh"}, WorkingDir: "/w", User: "u"}}
	if diff := cmp.Diff(want, img); diff != "" {
		t.Errorf("image (-want +got):\n%s", diff)
	}
	if !cmp.Equal(d.refs, []string{"busybox:1"}) || d.policy != policy {
		t.Errorf("pulled %v with %+v", d.refs, d.policy)
	}
	if !strings.Contains(ft.LogText(), "Pulling busybox:1") {
		t.Errorf("progress not in the task log: %q", ft.LogText())
	}
}

func TestPullFailureLines(t *testing.T) {
	d := &fakeDocker{pullErr: errors.New("manifest unknown")}
	ft := &featuretest.Task{Pay: &schemas.Payload{Image: schemas.Image{Type: schemas.ImageTypeDockerImage, Name: "nope:1"}}}
	tf, _ := New(d, docker.PullPolicy{}).NewTask(ft)
	_, err := tf.(features.ImageProvider).ProvideImage(t.Context(), &features.ImageRequest{})
	if err == nil || !strings.Contains(err.Error(), `pull image "nope:1": manifest unknown`) {
		t.Errorf("error %v", err)
	}
	for _, want := range []string{"[taskcluster:error] Pulling docker image has failed.", "[taskcluster:error] Error: manifest unknown"} {
		if !strings.Contains(ft.LogText(), want) {
			t.Errorf("log lacks %q:\n%s", want, ft.LogText())
		}
	}
}

// The seam against the real daemon: the Docker client satisfies the
// feature's interface and reads a real image's configuration.
func TestRealDocker(t *testing.T) {
	dc := dockertest.Require(t)
	var _ Docker = dc
	ft := &featuretest.Task{Pay: &schemas.Payload{Image: schemas.Image{Type: schemas.ImageTypeDockerImage, Name: dockertest.Image}}}
	tf, _ := New(dc, docker.PullPolicy{Attempts: 1}).NewTask(ft)
	img, err := tf.(features.ImageProvider).ProvideImage(t.Context(), &features.ImageRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(img.ID, "sha256:") || img.Name != dockertest.Image {
		t.Errorf("image %+v", img)
	}
}
