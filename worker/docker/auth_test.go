package docker_test

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
)

func TestEnsureImagePrivateRegistry(t *testing.T) {
	c := dockertest.Require(t)
	want, err := docker.ImageID(t.Context(), c, dockertest.Image)
	if err != nil {
		t.Fatalf("inspect %s: %v (run test/setup-env.sh)", dockertest.Image, err)
	}
	good := &docker.RegistryAuth{
		Username:      dockertest.PrivateUser,
		Password:      dockertest.PrivatePassword,
		ServerAddress: dockertest.PrivateRegistry,
	}
	wrong := &docker.RegistryAuth{
		Username:      dockertest.PrivateUser,
		Password:      "not-the-password",
		ServerAddress: dockertest.PrivateRegistry,
	}
	tests := []struct {
		name    string
		auth    *docker.RegistryAuth
		wantErr bool
	}{
		{"no credentials", nil, true},
		{"wrong password", wrong, true},
		{"right credentials", good, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := timeout(t, time.Minute)
			if err := c.RemoveImage(ctx, dockertest.PrivateImage); err != nil {
				t.Fatal(err)
			}
			before := docker.PullAttempts(c)
			p := quick()
			p.Attempts = 3
			p.Auth = tc.auth

			var out lockedBuffer
			id, err := c.EnsureImage(ctx, dockertest.PrivateImage, &out, p)
			t.Logf("error: %v\nprogress:\n%s", err, out.String())
			if n := docker.PullAttempts(c) - before; n != 1 {
				t.Errorf("%d attempts, want 1", n)
			}
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("EnsureImage: %v", err)
				}
				if id != want {
					t.Errorf("id = %q, want %q (the test image)", id, want)
				}
				return
			}
			if err == nil {
				t.Fatalf("EnsureImage = %q, want an error", id)
			}
			if !errors.Is(err, docker.ErrPullRefused) {
				t.Errorf("error %q does not wrap ErrPullRefused", err)
			}
			if strings.Contains(err.Error()+out.String(), wrong.Password) {
				t.Error("the password shows in the error or the progress")
			}
			if _, ierr := docker.ImageID(ctx, c, dockertest.PrivateImage); !docker.IsNotFound(ierr) {
				t.Errorf("after a refused pull, inspect %s: %v, want not found", dockertest.PrivateImage, ierr)
			}
		})
	}
}

// TestEnsureImageCredentialsAreNotShared holds a pull without credentials
// in flight (its progress writer blocks) while a call with credentials for
// the same image comes in: that call must not wait on, or share the
// refusal of, the first pull.
func TestEnsureImageCredentialsAreNotShared(t *testing.T) {
	c := dockertest.Require(t)
	ctx := timeout(t, time.Minute)
	if err := c.RemoveImage(ctx, dockertest.PrivateImage); err != nil {
		t.Fatal(err)
	}
	before := docker.PullsStarted(c)

	held := &holdingWriter{started: make(chan struct{}), release: make(chan struct{})}
	anonErr := make(chan error, 1)
	go func() {
		_, err := c.EnsureImage(ctx, dockertest.PrivateImage, held, quick())
		anonErr <- err
	}()
	<-held.started // the anonymous pull is in flight

	withAuth := quick()
	withAuth.Auth = &docker.RegistryAuth{
		Username:      dockertest.PrivateUser,
		Password:      dockertest.PrivatePassword,
		ServerAddress: dockertest.PrivateRegistry,
	}
	authErr := make(chan error, 1)
	go func() {
		_, err := c.EnsureImage(ctx, dockertest.PrivateImage, nil, withAuth)
		authErr <- err
	}()
	var err error
	select {
	case err = <-authErr:
	case <-time.After(10 * time.Second):
		err = errors.New("still waiting, on the anonymous pull")
	}
	close(held.release)
	if err != nil {
		t.Errorf("EnsureImage with credentials: %v", err)
	}
	if err := <-anonErr; !errors.Is(err, docker.ErrPullRefused) {
		t.Errorf("EnsureImage without credentials: %v, want ErrPullRefused", err)
	}
	if got := docker.PullsStarted(c) - before; got != 2 {
		t.Errorf("%d pulls started, want 2", got)
	}
}

// holdingWriter blocks its first Write until release is closed.
type holdingWriter struct {
	once             sync.Once
	started, release chan struct{}
}

func (h *holdingWriter) Write(p []byte) (int, error) {
	h.once.Do(func() {
		close(h.started)
		<-h.release
	})
	return len(p), nil
}

// registryDigest asks the open test registry for the manifest digest of
// repository:tag.
func registryDigest(t *testing.T, repository, tag string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodHead,
		"http://"+dockertest.Registry+"/v2/"+repository+"/manifests/"+tag, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("registry: %v (run test/setup-env.sh)", err)
	}
	resp.Body.Close()
	d := resp.Header.Get("Docker-Content-Digest")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(d, "sha256:") {
		t.Fatalf("HEAD manifest %s:%s: %s, digest %q", repository, tag, resp.Status, d)
	}
	return d
}

func TestEnsureImageByDigest(t *testing.T) {
	c := dockertest.Require(t)
	ctx := timeout(t, time.Minute)
	repo := strings.TrimSuffix(strings.TrimPrefix(dockertest.RegistryImage, dockertest.Registry+"/"), ":latest")
	digest := registryDigest(t, repo, "latest")
	ref := dockertest.Registry + "/" + repo + "@" + digest
	want, err := docker.ImageID(ctx, c, dockertest.Image)
	if err != nil {
		t.Fatal(err)
	}
	// Forget the digest reference (the image stays, under its tags), so
	// that only a pull by digest can bring it back.
	if err := c.RemoveImage(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if _, err := docker.ImageID(ctx, c, ref); !docker.IsNotFound(err) {
		t.Fatalf("inspect %s after removing it: %v, want not found", ref, err)
	}

	before := docker.PullsStarted(c)
	var out lockedBuffer
	id, err := c.EnsureImage(ctx, ref, &out, quick())
	if err != nil {
		t.Fatalf("EnsureImage(%s): %v\nprogress:\n%s", ref, err, out.String())
	}
	t.Logf("progress:\n%s", out.String())
	if id != want {
		t.Errorf("id = %q, want %q", id, want)
	}
	if n := docker.PullsStarted(c) - before; n != 1 {
		t.Errorf("%d pulls started, want 1", n)
	}
	if !strings.Contains(out.String(), "Pulling "+ref) {
		t.Errorf("progress does not name %s:\n%s", ref, out.String())
	}

	// Found locally by digest, also when a tag is given next to it.
	for _, again := range []string{ref, dockertest.Registry + "/" + repo + ":whatever@" + digest} {
		var out lockedBuffer
		id, err := c.EnsureImage(ctx, again, &out, quick())
		if err != nil || id != want {
			t.Errorf("EnsureImage(%s) = %q, %v; want %q", again, id, err, want)
		}
		if got, wantOut := out.String(), ref+" exists in the cache.\n"; got != wantOut {
			t.Errorf("EnsureImage(%s) progress = %q, want %q", again, got, wantOut)
		}
	}
	if n := docker.PullsStarted(c) - before; n != 1 {
		t.Errorf("%d pulls started in all, want 1", n)
	}

	// A digest the registry does not have is refused at once.
	missing := dockertest.Registry + "/" + repo + "@sha256:" + strings.Repeat("0", 64)
	attempts := docker.PullAttempts(c)
	p := quick()
	p.Attempts = 3
	if _, err := c.EnsureImage(ctx, missing, nil, p); !errors.Is(err, docker.ErrPullRefused) {
		t.Errorf("EnsureImage(%s) error = %v, want ErrPullRefused", missing, err)
	}
	if n := docker.PullAttempts(c) - attempts; n != 1 {
		t.Errorf("%d attempts for a missing digest, want 1", n)
	}
}
