package docker_test

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"

	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
)

func TestExec(t *testing.T) {
	c := dockertest.Require(t)
	ctx := t.Context()
	id, err := c.Create(ctx, docker.ContainerSpec{Image: dockertest.Image, Cmd: []string{"sleep", "600"}})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() {
		_ = c.Kill(t.Context(), id)
		_ = c.Remove(t.Context(), id)
	})
	if err := c.Start(ctx, id); err != nil {
		t.Fatalf("start: %v", err)
	}

	tests := []struct {
		name             string
		opts             docker.ExecOptions
		stdin            string
		stdout, stderr   string
		code             int
		wantTTYResizable bool
	}{
		{"streams and exit code", docker.ExecOptions{Cmd: []string{"sh", "-c", "cat; echo err >&2; exit 4"}}, "in\n", "in\n", "err\n", 4, false},
		{"tty", docker.ExecOptions{Cmd: []string{"sh", "-c", "read x; stty size; exit 2"}, TTY: true}, "go\n", "12 34", "", 2, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := c.Exec(ctx, id, tc.opts)
			if err != nil {
				t.Fatalf("Exec: %v", err)
			}
			defer e.Close()
			if tc.wantTTYResizable {
				if err := e.Resize(ctx, 12, 34); err != nil {
					t.Errorf("Resize: %v", err)
				}
			}
			if _, err := e.Write([]byte(tc.stdin)); err != nil {
				t.Fatalf("Write: %v", err)
			}
			// With a terminal, closing the input ends the whole session
			// at once; the command reads its line instead.
			if !tc.opts.TTY {
				if err := e.CloseStdin(); err != nil {
					t.Fatalf("CloseStdin: %v", err)
				}
			}
			var out, errOut bytes.Buffer
			if e.TTY() {
				_, err = io.Copy(&out, e.Output())
			} else {
				_, err = stdcopy.StdCopy(&out, &errOut, e.Output())
			}
			if err != nil {
				t.Fatalf("read output: %v", err)
			}
			if tc.opts.TTY && !bytes.Contains(out.Bytes(), []byte(tc.stdout)) {
				t.Errorf("terminal output %q, want %q in it", out.String(), tc.stdout)
			}
			if !tc.opts.TTY && (out.String() != tc.stdout || errOut.String() != tc.stderr) {
				t.Errorf("got stdout %q, stderr %q; want %q, %q", out.String(), errOut.String(), tc.stdout, tc.stderr)
			}
			var code int
			for range 50 {
				var running bool
				if code, running, err = e.ExitCode(ctx); err != nil || !running {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil || code != tc.code {
				t.Errorf("ExitCode: got %d, %v; want %d", code, err, tc.code)
			}
		})
	}

	if _, err := c.Exec(ctx, "no-such-container", docker.ExecOptions{Cmd: []string{"true"}}); err == nil {
		t.Error("Exec in a missing container: got nil error")
	}
}
