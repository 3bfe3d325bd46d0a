package docker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
)

// viaProxy is a client of the real daemon through a proxy the test can cut,
// and a direct client to clean up with.
func viaProxy(t *testing.T) (*docker.Client, *dockertest.Proxy, *docker.Client) {
	t.Helper()
	direct := dockertest.Require(t)
	p := dockertest.NewProxy(t)
	c, err := docker.NewHost(t.Context(), p.Host())
	if err != nil {
		t.Fatalf("NewHost: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c, p, direct
}

func wantDaemonError(t *testing.T, what string, err error, wantWhat string) {
	t.Helper()
	de, ok := docker.AsDaemonError(err)
	if !ok {
		t.Fatalf("%s: %v is no DaemonError", what, err)
	}
	if de.What != wantWhat {
		t.Errorf("%s: What = %q, want %q", what, de.What, wantWhat)
	}
	if !de.WorkerFault() {
		t.Errorf("%s: not a worker fault", what)
	}
}

// A wait the daemon's connection cuts off fails with a DaemonError, and
// so does every call while the daemon is gone; calls succeed again once
// it is back. Errors the daemon answers with are no DaemonErrors.
func TestDaemonFaults(t *testing.T) {
	c, p, direct := viaProxy(t)
	ctx := t.Context()

	if _, err := c.InspectImage(ctx, "docker-worker-test/no-such-image:none"); err == nil {
		t.Fatal("inspecting a missing image succeeded")
	} else if _, ok := docker.AsDaemonError(err); ok {
		t.Errorf("the daemon's own answer is a DaemonError: %v", err)
	}

	id := create(t, direct, docker.ContainerSpec{Cmd: []string{"sleep", "600"}})
	if err := c.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() {
		_, err := c.Wait(ctx, id)
		waited <- err
	}()
	// The wait is under way once the daemon holds its connection; cutting
	// earlier only fails the request instead, which is a fault as well.
	time.Sleep(200 * time.Millisecond)
	p.Cut()
	select {
	case err := <-waited:
		wantDaemonError(t, "Wait", err, "Docker daemon unreachable")
		t.Logf("cut-off wait: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("Wait did not return after the connection was cut")
	}
	if info, err := docker.InspectContainer(ctx, direct, id); err != nil || !info.State.Running {
		t.Errorf("the container should still run (only the client's connection was cut): %v", err)
	}

	wantDaemonError(t, "Ping", c.Ping(ctx), "Docker daemon unreachable")
	_, err := c.Create(ctx, docker.ContainerSpec{Image: dockertest.Image, Cmd: []string{"true"}})
	wantDaemonError(t, "Create", err, "Docker daemon unreachable")
	_, err = c.Attach(ctx, id)
	wantDaemonError(t, "Attach", err, "Docker daemon unreachable")
	wantDaemonError(t, "Kill", c.Kill(ctx, id), "Docker daemon unreachable")
	wantDaemonError(t, "Remove", c.Remove(ctx, id), "Docker daemon unreachable")
	_, err = c.ListContainers(ctx, map[string]string{"dev.dockerworker.worker-id": "none"})
	wantDaemonError(t, "ListContainers", err, "Docker daemon unreachable")
	if err := c.Ping(ctx); !strings.Contains(err.Error(), "ping docker daemon") {
		t.Errorf("the message lost its context: %v", err)
	}

	p.Restore()
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping after restore: %v", err)
	}
	if err := c.Remove(ctx, id); err != nil {
		t.Fatalf("Remove after restore: %v", err)
	}
}

// A container that vanishes while the worker waits on it (the daemon was
// restarted with it) fails the wait with a DaemonError.
func TestWaitOnAVanishedContainer(t *testing.T) {
	c, _, direct := viaProxy(t)
	id := create(t, direct, docker.ContainerSpec{Cmd: []string{"true"}})
	if err := direct.Remove(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	_, err := c.Wait(t.Context(), id)
	wantDaemonError(t, "Wait", err, "task container disappeared (was the Docker daemon restarted?)")
}

// A context the caller cancels is not the daemon's fault.
func TestCancelledCallIsNoDaemonError(t *testing.T) {
	c, _, direct := viaProxy(t)
	id := create(t, direct, docker.ContainerSpec{Cmd: []string{"sleep", "600"}})
	if err := c.Start(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Wait(ctx, id)
	if err == nil {
		t.Fatal("Wait returned no error for a cancelled context")
	}
	if _, ok := docker.AsDaemonError(err); ok {
		t.Errorf("a cancelled wait is a DaemonError: %v", err)
	}
}
