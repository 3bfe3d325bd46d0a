package docker_test

import (
	"context"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
)

// create makes a container and removes it when the test ends.
func create(t *testing.T, c *docker.Client, spec docker.ContainerSpec) string {
	t.Helper()
	if spec.Image == "" {
		spec.Image = dockertest.Image
	}
	id, err := c.Create(t.Context(), spec)
	if err != nil {
		t.Fatalf("Create: %v (run test/setup-env.sh)", err)
	}
	t.Cleanup(func() {
		// t.Context is already cancelled when cleanups run.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 30*time.Second)
		defer cancel()
		if err := c.Remove(ctx, id); err != nil {
			t.Errorf("Remove: %v", err)
		}
	})
	return id
}

// run creates, attaches, starts and waits for a container and returns its
// output and exit code.
func run(t *testing.T, c *docker.Client, spec docker.ContainerSpec) (string, int) {
	t.Helper()
	ctx := timeout(t, time.Minute)
	id := create(t, c, spec)
	stream, err := c.Attach(ctx, id)
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	defer stream.Close()
	type result struct {
		out []byte
		err error
	}
	read := make(chan result, 1)
	go func() {
		b, err := io.ReadAll(stream)
		read <- result{b, err}
	}()
	if err := c.Start(ctx, id); err != nil {
		t.Fatalf("Start: %v", err)
	}
	code, err := c.Wait(ctx, id)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	r := <-read
	if r.err != nil {
		t.Fatalf("reading output: %v", r.err)
	}
	return string(r.out), code
}

func TestRunTTY(t *testing.T) {
	t.Parallel()
	c := dockertest.Require(t)
	out, code := run(t, c, docker.ContainerSpec{Cmd: []string{"sh", "-c", "echo hello"}, Tty: true})
	if code != 0 {
		t.Errorf("exit code = %d, want 0", code)
	}
	if !strings.Contains(out, "hello") {
		t.Errorf("output = %q, want it to contain hello", out)
	}
}

func TestRunNoTTYMergesStreams(t *testing.T) {
	t.Parallel()
	c := dockertest.Require(t)
	out, code := run(t, c, docker.ContainerSpec{Cmd: []string{"sh", "-c", "echo to-stdout; echo to-stderr >&2"}})
	if code != 0 {
		t.Errorf("exit code = %d, want 0", code)
	}
	// stdout and stderr are separate pipes, so their relative order is not
	// guaranteed.
	for _, want := range []string{"to-stdout\n", "to-stderr\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output = %q, want it to contain %q", out, want)
		}
	}
}

func TestRunExitCode(t *testing.T) {
	t.Parallel()
	c := dockertest.Require(t)
	_, code := run(t, c, docker.ContainerSpec{Cmd: []string{"sh", "-c", "exit 3"}, Tty: true})
	if code != 3 {
		t.Errorf("exit code = %d, want 3", code)
	}
}

func TestKillThenWait(t *testing.T) {
	t.Parallel()
	c := dockertest.Require(t)
	ctx := timeout(t, 30*time.Second)
	id := create(t, c, docker.ContainerSpec{Cmd: []string{"sleep", "60"}})
	if err := c.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	if err := c.Kill(ctx, id); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	code, err := c.Wait(ctx, id)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if code != 137 {
		t.Errorf("exit code = %d, want 137 (SIGKILL)", code)
	}
	if d := time.Since(started); d > 20*time.Second {
		t.Errorf("Wait returned after %v, want promptly", d)
	}
	if err := c.Kill(ctx, id); err != nil {
		t.Errorf("Kill of a stopped container: %v, want nil", err)
	}
}

func TestStartMissingCommandFails(t *testing.T) {
	t.Parallel()
	c := dockertest.Require(t)
	ctx := timeout(t, 30*time.Second)
	id := create(t, c, docker.ContainerSpec{Cmd: []string{"/no/such/command"}})
	err := c.Start(ctx, id)
	if err == nil {
		t.Fatal("Start of /no/such/command succeeded, want an error")
	}
	t.Logf("Start error: %v", err)
}

func TestRemoveAndKillAreIdempotent(t *testing.T) {
	t.Parallel()
	c := dockertest.Require(t)
	ctx := timeout(t, 30*time.Second)
	id, err := c.Create(ctx, docker.ContainerSpec{Image: dockertest.Image, Cmd: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := c.Remove(ctx, id); err != nil {
			t.Errorf("Remove #%d: %v", i+1, err)
		}
	}
	if err := c.Kill(ctx, id); err != nil {
		t.Errorf("Kill of a removed container: %v, want nil", err)
	}
	if err := c.Remove(ctx, "no-such-container-dw-test"); err != nil {
		t.Errorf("Remove of a missing container: %v, want nil", err)
	}
}

func TestCreateAppliesSpec(t *testing.T) {
	t.Parallel()
	c := dockertest.Require(t)
	spec := docker.ContainerSpec{
		Cmd:        []string{"sh", "-c", `echo "FOO=$FOO"; grep example.test /etc/hosts`},
		Env:        []string{"FOO=bar baz"},
		ExtraHosts: []string{"example.test:10.1.2.3"},
		CapAdd:     []string{"SYS_PTRACE"},
		ShmSize:    64 << 20,
		Labels:     map[string]string{"dev.dockerworker.test": "yes", "task": "abc"},
	}
	out, code := run(t, c, spec)
	if code != 0 {
		t.Errorf("exit code = %d, want 0; output %q", code, out)
	}
	for _, want := range []string{"FOO=bar baz\n", "10.1.2.3", "example.test"} {
		if !strings.Contains(out, want) {
			t.Errorf("output = %q, want it to contain %q", out, want)
		}
	}

	id := create(t, c, spec)
	info, err := docker.InspectContainer(t.Context(), c, id)
	if err != nil {
		t.Fatal(err)
	}
	// The container also inherits the image's labels.
	for k, v := range spec.Labels {
		if got, ok := info.Config.Labels[k]; !ok || got != v {
			t.Errorf("label %s = %q (present %v), want %q", k, got, ok, v)
		}
	}
	if !slices.Contains(info.Config.Env, "FOO=bar baz") {
		t.Errorf("env = %q, want FOO=bar baz", info.Config.Env)
	}
	if !info.Config.AttachStdout || !info.Config.AttachStderr || info.Config.OpenStdin {
		t.Errorf("attach stdout/stderr, open stdin = %v/%v, %v; want true/true, false",
			info.Config.AttachStdout, info.Config.AttachStderr, info.Config.OpenStdin)
	}
	if got := info.HostConfig.ShmSize; got != spec.ShmSize {
		t.Errorf("shm size = %d, want %d", got, spec.ShmSize)
	}
	if !slices.ContainsFunc(info.HostConfig.CapAdd, func(s string) bool { return strings.HasSuffix(s, "SYS_PTRACE") }) {
		t.Errorf("cap add = %q, want SYS_PTRACE", info.HostConfig.CapAdd)
	}
	if diff := cmp.Diff(spec.ExtraHosts, info.HostConfig.ExtraHosts); diff != "" {
		t.Errorf("extra hosts (-want +got):\n%s", diff)
	}
}
