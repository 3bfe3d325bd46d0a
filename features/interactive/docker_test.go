package interactive

import (
	"bytes"
	"crypto/rand"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
)

// runContainer starts a container of the test image and removes it when
// the test ends.
func runContainer(t *testing.T, dc *docker.Client, spec docker.ContainerSpec) string {
	t.Helper()
	ctx := t.Context()
	spec.Image = dockertest.Image
	id, err := dc.Create(ctx, spec)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() {
		ctx := testCtx(t, 30*time.Second)
		_ = dc.Kill(ctx, id)
		_ = dc.Remove(ctx, id)
	})
	if err := dc.Start(ctx, id); err != nil {
		t.Fatalf("start: %v", err)
	}
	return id
}

func startShell(t *testing.T, dc *docker.Client, id string, max int) (*Server, string) {
	t.Helper()
	srv, err := StartServer(ServerConfig{Address: "127.0.0.1"})
	if err != nil {
		t.Fatalf("StartServer: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	token := srv.Add(&Target{ContainerID: id, Docker: DockerExecer{Client: dc}, MaxSessions: max})
	return srv, srv.URL("127.0.0.1", token)
}

func TestSessions(t *testing.T) {
	dc := dockertest.Require(t)
	id := runContainer(t, dc, docker.ContainerSpec{Cmd: []string{"sleep", "600"}})
	_, socket := startShell(t, dc, id, 0)

	t.Run("cat echoes bytes", func(t *testing.T) {
		ctx := testCtx(t, time.Minute)
		c, err := dialShell(ctx, t, socket, false, "cat")
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		want := []byte{0xfa, 0xff, 0x0a}
		c.send(ctx, append([]byte{MsgStdin}, want...))
		s := &session{exitCode: -1}
		if err := c.readUntil(ctx, s, len(want)); err != nil {
			t.Fatalf("read: %v", err)
		}
		if !bytes.Equal(s.stdout.Bytes(), want) {
			t.Errorf("stdout: got %x, want %x", s.stdout.Bytes(), want)
		}
		if s.resumes != 1 {
			t.Errorf("got %d resume messages before output, want 1", s.resumes)
		}
		c.send(ctx, []byte{MsgEnd})
		if err := c.readUntil(ctx, s, 0); err != nil {
			t.Fatalf("read to the end: %v", err)
		}
		if s.exitCode != 0 {
			t.Errorf("exit code: got %d, want 0", s.exitCode)
		}
	})

	t.Run("cat stress test", func(t *testing.T) {
		ctx := testCtx(t, 2*time.Minute)
		c, err := dialShell(ctx, t, socket, false, "cat")
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		data := make([]byte, 1<<20)
		rand.Read(data)
		go func() {
			for chunk := range slices.Chunk(data, 64*1024) {
				if err := c.conn.Write(ctx, websocket.MessageBinary, append([]byte{MsgStdin}, chunk...)); err != nil {
					return
				}
			}
			_ = c.conn.Write(ctx, websocket.MessageBinary, []byte{MsgEnd})
		}()
		s := &session{exitCode: -1}
		if err := c.readUntil(ctx, s, 0); err != nil {
			t.Fatalf("read: %v", err)
		}
		if !bytes.Equal(s.stdout.Bytes(), data) {
			t.Errorf("got %d bytes back, want the %d sent", s.stdout.Len(), len(data))
		}
		if s.exitCode != 0 {
			t.Errorf("exit code: got %d, want 0", s.exitCode)
		}
	})

	t.Run("stderr and exit code", func(t *testing.T) {
		ctx := testCtx(t, time.Minute)
		c, err := dialShell(ctx, t, socket, false, "sh", "-c", "echo out; echo err >&2; exit 3")
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		s := &session{exitCode: -1}
		if err := c.readUntil(ctx, s, 0); err != nil {
			t.Fatalf("read: %v", err)
		}
		if s.stdout.String() != "out\n" || s.stderr.String() != "err\n" || s.exitCode != 3 {
			t.Errorf("got stdout %q, stderr %q, exit %d; want \"out\\n\", \"err\\n\", 3", s.stdout.String(), s.stderr.String(), s.exitCode)
		}
	})

	t.Run("tty resize", func(t *testing.T) {
		ctx := testCtx(t, time.Minute)
		c, err := dialShell(ctx, t, socket, true, "sh")
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		c.send(ctx, resizeMessage(33, 101))
		c.send(ctx, append([]byte{MsgStdin}, "stty size; exit 5\n"...))
		s := &session{exitCode: -1}
		if err := c.readUntil(ctx, s, 0); err != nil {
			t.Fatalf("read: %v", err)
		}
		if !strings.Contains(s.stdout.String(), "33 101") || s.exitCode != 5 {
			t.Errorf("got output %q, exit %d; want \"33 101\" in it, exit 5", s.stdout.String(), s.exitCode)
		}
	})

	t.Run("resize without tty", func(t *testing.T) {
		ctx := testCtx(t, time.Minute)
		c, err := dialShell(ctx, t, socket, false, "cat")
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		c.send(ctx, resizeMessage(10, 10))
		c.send(ctx, []byte{MsgEnd})
		s := &session{exitCode: -1}
		if err := c.readUntil(ctx, s, 0); err != nil {
			t.Fatalf("read: %v", err)
		}
		if len(s.errs) != 1 || !strings.Contains(s.errs[0], "not a tty") {
			t.Errorf("errors: got %q, want one about the tty", s.errs)
		}
	})

	t.Run("unknown token", func(t *testing.T) {
		u := strings.Replace(socket, "ws://", "http://", 1)
		u = u[:strings.LastIndex(u[:len(u)-len(SocketPath)], "/")+1] + "nope" + SocketPath
		res, err := http.Get(u)
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusNotFound {
			t.Errorf("status: got %d, want 404", res.StatusCode)
		}
	})
}

func TestTooManySessions(t *testing.T) {
	dc := dockertest.Require(t)
	id := runContainer(t, dc, docker.ContainerSpec{Cmd: []string{"sleep", "600"}})
	_, socket := startShell(t, dc, id, 1)
	ctx := testCtx(t, time.Minute)
	first, err := dialShell(ctx, t, socket, false, "cat")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if m, err := first.next(ctx); err != nil || m[0] != MsgResume {
		t.Fatalf("first session: got %v, %v; want resume", m, err)
	}
	second, err := dialShell(ctx, t, socket, false, "cat")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	m, err := second.next(ctx)
	if err != nil || m[0] != MsgError || string(m[1:]) != "Too many sessions active!" {
		t.Errorf("second session: got %q, %v; want the too-many-sessions error", m, err)
	}
}

func TestDropEndsSessions(t *testing.T) {
	dc := dockertest.Require(t)
	id := runContainer(t, dc, docker.ContainerSpec{Cmd: []string{"sleep", "600"}})
	srv, err := StartServer(ServerConfig{Address: "127.0.0.1"})
	if err != nil {
		t.Fatalf("StartServer: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	token := srv.Add(&Target{ContainerID: id, Docker: DockerExecer{Client: dc}})
	ctx := testCtx(t, time.Minute)
	c, err := dialShell(ctx, t, srv.URL("127.0.0.1", token), false, "cat")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if m, err := c.next(ctx); err != nil || m[0] != MsgResume {
		t.Fatalf("got %v, %v; want resume", m, err)
	}
	srv.Drop(token)
	m, err := c.next(ctx)
	if err != nil || m[0] != MsgShutdown {
		t.Errorf("after Drop: got %v, %v; want shutdown", m, err)
	}
}

// The wrapped entrypoint keeps the container while the hold file exists,
// then exits with the command's status.
func TestWrapperHolds(t *testing.T) {
	dc := dockertest.Require(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	h := newHold(filepath.Join(dir, holdFile), 0)
	h.start(time.Hour)
	id := runContainer(t, dc, docker.ContainerSpec{
		Entrypoint: []string{"/bin/sh", "-c", wrapperScript, "interactive-wrapper"},
		Cmd:        []string{"sh", "-c", "exit 7"},
		Binds:      []string{dir + ":" + MountPoint + ":ro"},
	})
	_, socket := startShell(t, dc, id, 0)
	time.Sleep(2 * time.Second)
	ctx := testCtx(t, time.Minute)
	c, err := dialShell(ctx, t, socket, false, "echo", "alive")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	s := &session{exitCode: -1}
	if err := c.readUntil(ctx, s, 0); err != nil {
		t.Fatalf("read: %v", err)
	}
	if s.stdout.String() != "alive\n" {
		t.Errorf("session after the command ended: got %q, %q; want \"alive\\n\"", s.stdout.String(), s.errs)
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	code, err := dc.Wait(ctx, id)
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	if code != 7 {
		t.Errorf("exit code: got %d, want the command's 7", code)
	}
}
