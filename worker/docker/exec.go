package docker

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/moby/moby/client"
)

// ExecOptions describes a process to run in a running container.
type ExecOptions struct {
	// Cmd is the command and its arguments.
	Cmd []string
	// TTY gives the process a terminal: its output is then one raw stream.
	TTY bool
}

// Exec is a process running in a container with its standard streams
// attached. Read its output with [Exec.Output], write its input with
// [Exec.Write], and release it with [Exec.Close].
type Exec struct {
	c   *Client
	id  string
	tty bool
	hr  client.HijackedResponse

	closeOnce sync.Once
}

// Exec starts opts.Cmd in the running container id, with stdin, stdout and
// stderr attached. It fails when the container is not running.
func (c *Client) Exec(ctx context.Context, id string, opts ExecOptions) (*Exec, error) {
	created, err := c.api.ExecCreate(ctx, id, client.ExecCreateOptions{
		TTY:          opts.TTY,
		AttachStdin:  true,
		AttachStdout: true,
		AttachStderr: true,
		Cmd:          opts.Cmd,
	})
	if err != nil {
		return nil, fmt.Errorf("exec in container %s: %w", id, fault(err))
	}
	res, err := c.api.ExecAttach(ctx, created.ID, client.ExecAttachOptions{TTY: opts.TTY})
	if err != nil {
		return nil, fmt.Errorf("start exec %s in container %s: %w", created.ID, id, fault(err))
	}
	return &Exec{c: c, id: created.ID, tty: opts.TTY, hr: res.HijackedResponse}, nil
}

// ID is the daemon's ID of the exec instance.
func (e *Exec) ID() string { return e.id }

// TTY reports whether the process has a terminal.
func (e *Exec) TTY() bool { return e.tty }

// Output is the process's output as the daemon sends it: with a terminal,
// the raw terminal stream; without one, stdout and stderr multiplexed in
// frames of an 8-byte header (stream type 1 or 2, three zero bytes, the
// big-endian 32-bit payload length) followed by the payload. It ends
// (io.EOF) when the process's output ends.
func (e *Exec) Output() io.Reader { return e.hr.Reader }

// Write sends p to the process's standard input.
func (e *Exec) Write(p []byte) (int, error) { return e.hr.Conn.Write(p) }

// CloseStdin closes the process's standard input; its output stays open.
func (e *Exec) CloseStdin() error { return e.hr.CloseWrite() }

// Resize sets the terminal size of a process started with a TTY.
func (e *Exec) Resize(ctx context.Context, height, width uint) error {
	if _, err := e.c.api.ExecResize(ctx, e.id, client.ExecResizeOptions{Height: height, Width: width}); err != nil {
		return fmt.Errorf("resize exec %s: %w", e.id, fault(err))
	}
	return nil
}

// ExitCode returns the exit code of the process; running is true when it
// has not exited yet.
func (e *Exec) ExitCode(ctx context.Context) (code int, running bool, err error) {
	res, err := e.c.api.ExecInspect(ctx, e.id, client.ExecInspectOptions{})
	if err != nil {
		return 0, false, fmt.Errorf("inspect exec %s: %w", e.id, fault(err))
	}
	return res.ExitCode, res.Running, nil
}

// Close drops the attached streams. The process goes on running unless it
// ends when its input or output closes. Close may be called more than once.
func (e *Exec) Close() error {
	e.closeOnce.Do(e.hr.Close)
	return nil
}
