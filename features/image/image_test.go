package image

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/features/featuretest"
	"go.dockerworker.dev/docker-worker/schemas"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockerfake"
	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
)

// fakeDocker is the scripted Docker, recording the policy of every pull.
type fakeDocker struct {
	*dockerfake.Fake
	mu       sync.Mutex
	policies []docker.PullPolicy
}

func newDocker() *fakeDocker { return &fakeDocker{Fake: &dockerfake.Fake{}} }

func (d *fakeDocker) EnsureImage(ctx context.Context, ref string, progress io.Writer, p docker.PullPolicy) (string, error) {
	d.mu.Lock()
	d.policies = append(d.policies, p)
	d.mu.Unlock()
	return d.Fake.EnsureImage(ctx, ref, progress, p)
}

func registryTask(name string, scopes ...string) *featuretest.Task {
	return &featuretest.Task{Scope: scopes,
		Pay: &schemas.Payload{Image: schemas.Image{Type: schemas.ImageTypeDockerImage, Name: name, Shorthand: true}}}
}

func provide(t *testing.T, f *Feature, ft *featuretest.Task) (features.Image, error) {
	t.Helper()
	tf, err := f.NewTask(ft)
	if err != nil {
		t.Fatal(err)
	}
	return tf.(features.ImageProvider).ProvideImage(t.Context(), &features.ImageRequest{})
}

func TestProvideRegistryImage(t *testing.T) {
	d := newDocker()
	d.ImageConfig = func(string) docker.ImageConfig {
		return docker.ImageConfig{Entrypoint: []string{"/init"}, Cmd: []string{"sh"}, WorkingDir: "/w", User: "u", Size: 1234}
	}
	policy := docker.PullPolicy{Attempts: 3, StallTimeout: 7}
	ft := registryTask("busybox:1")
	img, err := provide(t, New(Config{Docker: d, Policy: policy}), ft)
	if err != nil {
		t.Fatal(err)
	}
	want := features.Image{ID: dockerfake.ImageID("busybox:1"), Name: "busybox:1",
		Config: features.ImageConfig{Entrypoint: []string{"/init"}, Cmd: []string{"sh"}, WorkingDir: "/w", User: "u"},
		Fetch:  features.ImageFetch{Kind: features.ImagePull, Bytes: 1234}}
	if diff := cmp.Diff(want, img); diff != "" {
		t.Errorf("image (-want +got):\n%s", diff)
	}
	if !cmp.Equal(d.Pulls(), []string{"busybox:1"}) || len(d.policies) != 1 || d.policies[0] != policy {
		t.Errorf("pulled %v with %+v", d.Pulls(), d.policies)
	}
	if !strings.Contains(ft.LogText(), "busybox:1 exists in the cache.") {
		t.Errorf("progress not in the task log: %q", ft.LogText())
	}
	// The second run finds it in Docker: nothing fetched.
	again, err := provide(t, New(Config{Docker: d, Policy: policy}), registryTask("busybox:1"))
	if err != nil {
		t.Fatal(err)
	}
	if want := (features.ImageFetch{Kind: features.ImagePull, Cached: true}); again.Fetch != want {
		t.Errorf("second fetch %+v, want %+v", again.Fetch, want)
	}
}

func TestPullFailureLines(t *testing.T) {
	d := newDocker()
	d.PullErr = func(string) error { return errors.New("manifest unknown") }
	ft := registryTask("nope:1")
	_, err := provide(t, New(Config{Docker: d}), ft)
	if err == nil || !strings.Contains(err.Error(), `pull image "nope:1"`) || !strings.Contains(err.Error(), "manifest unknown") {
		t.Errorf("error %v", err)
	}
	for _, want := range []string{"[taskcluster:error] Pulling docker image has failed.", "manifest unknown"} {
		if !strings.Contains(ft.LogText(), want) {
			t.Errorf("log lacks %q:\n%s", want, ft.LogText())
		}
	}
}

func TestRegistryCredentials(t *testing.T) {
	regs := map[string]RegistryCredentials{
		"registry.hub.docker.com":          {Username: "hub", Password: "hub-pw"},
		"registry.hub.docker.com/someuser": {Username: "someuser", Password: "su-pw"},
		"127.0.0.1:5001":                   {Username: "local", Password: "local-pw"},
		"reg.example/team/":                {Username: "team", Password: "team-pw"},
	}
	f := New(Config{Registries: regs, DefaultRegistry: "registry.hub.docker.com"})
	for _, tc := range []struct {
		name string
		want *docker.RegistryAuth
	}{
		{"ubuntu:24.04", nil}, // official images never authenticate
		{"library/ubuntu", &docker.RegistryAuth{Username: "hub", Password: "hub-pw", ServerAddress: "registry.hub.docker.com"}},
		{"someuser/image:1", &docker.RegistryAuth{Username: "someuser", Password: "su-pw", ServerAddress: "registry.hub.docker.com"}},
		{"someuserx/image", &docker.RegistryAuth{Username: "hub", Password: "hub-pw", ServerAddress: "registry.hub.docker.com"}},
		{"registry.hub.docker.com/someuser/image", &docker.RegistryAuth{Username: "someuser", Password: "su-pw", ServerAddress: "registry.hub.docker.com"}},
		{"127.0.0.1:5001/busybox:latest", &docker.RegistryAuth{Username: "local", Password: "local-pw", ServerAddress: "127.0.0.1:5001"}},
		{"127.0.0.1:5001/a/b/c@sha256:00", &docker.RegistryAuth{Username: "local", Password: "local-pw", ServerAddress: "127.0.0.1:5001"}},
		{"127.0.0.1:5000/busybox", nil},
		{"reg.example/team/x", &docker.RegistryAuth{Username: "team", Password: "team-pw", ServerAddress: "reg.example"}},
		{"reg.example/other/x", nil},
		{"localhost/x", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := f.credentials(tc.name)
			if tc.want == nil {
				if ok {
					t.Errorf("credentials %+v, want none", got)
				}
				return
			}
			if !ok || got != *tc.want {
				t.Errorf("credentials %+v (%v), want %+v", got, ok, *tc.want)
			}
		})
	}
	if _, ok := New(Config{}).credentials("someuser/image"); ok {
		t.Error("credentials without registries")
	}
}

func TestRequiredScopes(t *testing.T) {
	regs := map[string]RegistryCredentials{"127.0.0.1:5001": {Username: "u", Password: "p"}}
	f := New(Config{Registries: regs, DefaultRegistry: "registry.hub.docker.com"})
	const ensure = ".  Ensure that the task scopes are correctly defined in the task definition"
	for _, tc := range []struct {
		name string
		img  schemas.Image
		want []features.ScopeRequirement
	}{
		{"public registry image", schemas.Image{Type: schemas.ImageTypeDockerImage, Name: "someuser/img", Shorthand: true}, nil},
		{"private registry image", schemas.Image{Type: schemas.ImageTypeDockerImage, Name: "127.0.0.1:5001/busybox", Shorthand: true},
			[]features.ScopeRequirement{{
				AnyOf:   []string{"docker-worker:image:127.0.0.1:5001/busybox", "docker-worker:image:127.0.0.1:5001/busybox:latest"},
				Message: `Not authorized to use "127.0.0.1:5001/busybox"` + ensure,
			}}},
		{"private registry image object", schemas.Image{Type: schemas.ImageTypeDockerImage, Name: "127.0.0.1:5001/busybox:1"},
			[]features.ScopeRequirement{{
				AnyOf:   []string{"docker-worker:image:127.0.0.1:5001/busybox:1"},
				Message: `Not authorized to use {"type":"docker-image","name":"127.0.0.1:5001/busybox:1"}` + ensure,
			}}},
		{"public task image", schemas.Image{Type: schemas.ImageTypeTaskImage, TaskID: "T", Path: "public/image.tar"}, nil},
		{"public task image, leading slash", schemas.Image{Type: schemas.ImageTypeTaskImage, TaskID: "T", Path: "/public/image.tar"}, nil},
		{"private task image", schemas.Image{Type: schemas.ImageTypeTaskImage, TaskID: "T", Path: "private/image.tar"},
			[]features.ScopeRequirement{{
				AnyOf:   []string{"queue:get-artifact:private/image.tar"},
				Message: `Not authorized to use {"type":"task-image","taskId":"T","path":"private/image.tar"}` + ensure,
			}}},
		{"publicity is a prefix", schemas.Image{Type: schemas.ImageTypeTaskImage, TaskID: "T", Path: "x/public/image.tar"},
			[]features.ScopeRequirement{{
				AnyOf:   []string{"queue:get-artifact:x/public/image.tar"},
				Message: `Not authorized to use {"type":"task-image","taskId":"T","path":"x/public/image.tar"}` + ensure,
			}}},
		{"public indexed image", schemas.Image{Type: schemas.ImageTypeIndexedImage, Namespace: "a.b", Path: "public/image.tar"}, nil},
		{"private indexed image", schemas.Image{Type: schemas.ImageTypeIndexedImage, Namespace: "a.b", Path: "private/i.tar.zst"},
			[]features.ScopeRequirement{{
				AnyOf:   []string{"queue:get-artifact:private/i.tar.zst"},
				Message: `Not authorized to use {"type":"indexed-image","namespace":"a.b","path":"private/i.tar.zst"}` + ensure,
			}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tf, _ := f.NewTask(&featuretest.Task{Pay: &schemas.Payload{Image: tc.img}})
			got := tf.(features.ScopeRequirer).RequiredScopes()
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("requirements (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPullUsesCredentials(t *testing.T) {
	d := newDocker()
	regs := map[string]RegistryCredentials{"127.0.0.1:5001": {Username: "u", Password: "secret-pw"}}
	f := New(Config{Docker: d, Registries: regs, Policy: docker.PullPolicy{Attempts: 2, StallTimeout: 9}})
	ft := registryTask("127.0.0.1:5001/busybox")
	if _, err := provide(t, f, ft); err != nil {
		t.Fatal(err)
	}
	if _, err := provide(t, f, registryTask("busybox")); err != nil {
		t.Fatal(err)
	}
	want := []docker.PullPolicy{
		{Attempts: 2, StallTimeout: 9, Auth: &docker.RegistryAuth{Username: "u", Password: "secret-pw", ServerAddress: "127.0.0.1:5001"}},
		{Attempts: 2, StallTimeout: 9},
	}
	if diff := cmp.Diff(want, d.policies); diff != "" {
		t.Errorf("policies (-want +got):\n%s", diff)
	}
	if strings.Contains(ft.LogText(), "secret-pw") {
		t.Error("the registry password reached the task log")
	}
}

// The seam against the real daemon: the Docker client satisfies the
// feature's interface and reads a real image's configuration.
func TestRealDocker(t *testing.T) {
	dc := dockertest.Require(t)
	var _ Docker = dc
	ft := registryTask(dockertest.Image)
	img, err := provide(t, New(Config{Docker: dc, Policy: docker.PullPolicy{Attempts: 1}}), ft)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(img.ID, "sha256:") || img.Name != dockertest.Image {
		t.Errorf("image %+v", img)
	}
}

// logHas fails the test unless the task log holds every want.
func logHas(t *testing.T, ft *featuretest.Task, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(ft.LogText(), w) {
			t.Errorf("log lacks %q; log:\n%s", w, ft.LogText())
		}
	}
}
