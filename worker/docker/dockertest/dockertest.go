// Package dockertest gates tests that need a real Docker daemon, names
// the images that test/setup-env.sh prepares for them, and offers a socket
// proxy to the daemon that a test can cut ([Proxy]), to take the daemon
// away from a client without stopping it. Only tests import it.
package dockertest

import (
	"context"
	"os"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/docker"
)

// Names of the test image. test/fixtures/busybox/image.env holds the same
// values for test/setup-env.sh; a test keeps the two in step.
const (
	// Image is the busybox image built locally by test/setup-env.sh.
	Image = "docker-worker-test/busybox:latest"
	// Registry is the address of the loopback registry started by
	// test/setup-env.sh.
	Registry = "127.0.0.1:5000"
	// RegistryImage is Image as pushed to Registry, for pull tests: remove
	// the local copy with [docker.Client.RemoveImage] and pull it again.
	RegistryImage = Registry + "/" + Image
	// RegistryImageE2E is the same image under the name the end-to-end
	// tests remove and pull, so they never race this package's tests.
	RegistryImageE2E = Registry + "/docker-worker-test/busybox-e2e:latest"

	// PrivateRegistry is the address of the loopback registry that
	// test/setup-env.sh starts with basic authentication.
	PrivateRegistry = "127.0.0.1:5001"
	// PrivateImage is Image as pushed to PrivateRegistry; pulling it needs
	// PrivateUser and PrivatePassword.
	PrivateImage = PrivateRegistry + "/docker-worker-test/private-busybox:latest"
	// PrivateUser and PrivatePassword are PrivateRegistry's only account
	// (test-only values).
	PrivateUser     = "dwtest"
	PrivatePassword = "dwtest-registry-secret"
)

// Require returns a client connected to the Docker daemon, closed when the
// test ends. It skips the test under -short. When no daemon answers it
// skips the test, or fails it if the CI environment variable is set, so
// that the Docker tier cannot silently vanish in CI.
func Require(t testing.TB) *docker.Client {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a Docker daemon; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := docker.New(ctx)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("no Docker daemon (CI is set, so this fails instead of skipping; run test/setup-env.sh): %v", err)
		}
		t.Skipf("no Docker daemon (run test/setup-env.sh): %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close docker client: %v", err)
		}
	})
	return c
}
