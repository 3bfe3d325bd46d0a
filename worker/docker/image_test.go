package docker_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
)

// quick is a pull policy that keeps failure tests fast.
func quick() docker.PullPolicy {
	return docker.PullPolicy{Attempts: 2, BaseDelay: 10 * time.Millisecond, Randomization: 0.25}
}

// lockedBuffer is a progress writer that is safe to read while written.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func timeout(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestEnsureImagePresent(t *testing.T) {
	c := dockertest.Require(t)
	ctx := timeout(t, 30*time.Second)
	before := docker.PullsStarted(c)

	var out lockedBuffer
	id, err := c.EnsureImage(ctx, dockertest.Image, &out, quick())
	if err != nil {
		t.Fatalf("EnsureImage: %v (run test/setup-env.sh)", err)
	}
	if !strings.HasPrefix(id, "sha256:") {
		t.Errorf("id = %q, want sha256:...", id)
	}
	if got, want := out.String(), dockertest.Image+" exists in the cache.\n"; got != want {
		t.Errorf("progress = %q, want %q", got, want)
	}
	if n := docker.PullsStarted(c) - before; n != 0 {
		t.Errorf("%d pulls started, want 0", n)
	}
}

func TestEnsureImagePullsWhenAbsent(t *testing.T) {
	c := dockertest.Require(t)
	ctx := timeout(t, 2*time.Minute)
	if err := c.RemoveImage(ctx, dockertest.RegistryImage); err != nil {
		t.Fatal(err)
	}
	before := docker.PullsStarted(c)

	var out lockedBuffer
	id, err := c.EnsureImage(ctx, dockertest.RegistryImage, &out, quick())
	if err != nil {
		t.Fatalf("EnsureImage: %v\nprogress:\n%s", err, out.String())
	}
	t.Logf("progress:\n%s", out.String())
	if n := docker.PullsStarted(c) - before; n != 1 {
		t.Errorf("%d pulls started, want 1", n)
	}
	if !strings.Contains(out.String(), "Pulling "+dockertest.RegistryImage) {
		t.Errorf("progress does not mention the pull:\n%s", out.String())
	}

	var again lockedBuffer
	id2, err := c.EnsureImage(ctx, dockertest.RegistryImage, &again, quick())
	if err != nil {
		t.Fatal(err)
	}
	if id2 != id {
		t.Errorf("second EnsureImage id = %q, want %q", id2, id)
	}
	if !strings.Contains(again.String(), "exists in the cache.") {
		t.Errorf("second EnsureImage progress = %q, want a cache hit", again.String())
	}
}

func TestEnsureImageMissingIsNotRetried(t *testing.T) {
	c := dockertest.Require(t)
	ctx := timeout(t, time.Minute)
	const image = "127.0.0.1:5000/nope/nothing:1"
	before := docker.PullAttempts(c)

	var out lockedBuffer
	p := quick()
	p.Attempts = 3
	id, err := c.EnsureImage(ctx, image, &out, p)
	if err == nil {
		t.Fatalf("EnsureImage(%s) = %q, want an error", image, id)
	}
	t.Logf("error: %v\nprogress:\n%s", err, out.String())
	if !strings.Contains(err.Error(), image) {
		t.Errorf("error %q does not name %s", err, image)
	}
	if !errors.Is(err, docker.ErrPullRefused) {
		t.Errorf("error %q does not wrap ErrPullRefused", err)
	}
	if n := docker.PullAttempts(c) - before; n != 1 {
		t.Errorf("%d attempts, want 1 (a missing image is not retried)", n)
	}
	if strings.Contains(out.String(), "attempt 2") {
		t.Errorf("progress shows a retry:\n%s", out.String())
	}
}

func TestEnsureImageConcurrentCallsSharePull(t *testing.T) {
	c := dockertest.Require(t)
	ctx := timeout(t, 2*time.Minute)
	if err := c.RemoveImage(ctx, dockertest.RegistryImage); err != nil {
		t.Fatal(err)
	}
	before := docker.PullsStarted(c)

	const n = 2
	var (
		wg   sync.WaitGroup
		ids  [n]string
		errs [n]error
		outs [n]lockedBuffer
	)
	for i := range n {
		wg.Go(func() {
			ids[i], errs[i] = c.EnsureImage(ctx, dockertest.RegistryImage, &outs[i], quick())
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("call %d: %v\nprogress:\n%s", i, errs[i], outs[i].String())
		}
		t.Logf("call %d progress:\n%s", i, outs[i].String())
	}
	if ids[0] != ids[1] || !strings.HasPrefix(ids[0], "sha256:") {
		t.Errorf("ids = %q, want one sha256 ID", ids)
	}
	if got := docker.PullsStarted(c) - before; got != 1 {
		t.Errorf("%d pulls started, want 1", got)
	}
}

func TestEnsureImageInvalidReference(t *testing.T) {
	c := dockertest.Require(t)
	_, err := c.EnsureImage(t.Context(), "Bad Ref", nil, quick())
	if err == nil || !strings.Contains(err.Error(), "Bad Ref") {
		t.Errorf("EnsureImage(invalid) error = %v, want one naming the reference", err)
	}
}
