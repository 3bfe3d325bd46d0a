package interactive

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// shellClient is a test client of the protocol.
type shellClient struct {
	t    *testing.T
	conn *websocket.Conn
}

// dialShell opens a session running cmd at socketURL.
func dialShell(ctx context.Context, t *testing.T, socketURL string, tty bool, cmd ...string) (*shellClient, error) {
	t.Helper()
	q := url.Values{"command": cmd}
	if tty {
		q.Set("tty", "true")
	}
	conn, _, err := websocket.Dial(ctx, socketURL+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	conn.SetReadLimit(maxMessage)
	c := &shellClient{t: t, conn: conn}
	t.Cleanup(func() { _ = conn.CloseNow() })
	return c, nil
}

func (c *shellClient) send(ctx context.Context, m []byte) {
	c.t.Helper()
	if err := c.conn.Write(ctx, websocket.MessageBinary, m); err != nil {
		c.t.Fatalf("send message %d: %v", m[0], err)
	}
}

// next returns the next message.
func (c *shellClient) next(ctx context.Context) ([]byte, error) {
	_, m, err := c.conn.Read(ctx)
	if err == nil && len(m) == 0 {
		return nil, fmt.Errorf("empty message")
	}
	return m, err
}

// session is what a session produced: output by stream and its end.
type session struct {
	stdout, stderr bytes.Buffer
	exitCode       int // -1: no stopped message
	errs           []string
	resumes        int
}

// readUntil reads until the output holds want bytes of stdout or the
// session stops.
func (c *shellClient) readUntil(ctx context.Context, s *session, stdoutLen int) error {
	for {
		if stdoutLen > 0 && s.stdout.Len() >= stdoutLen {
			return nil
		}
		m, err := c.next(ctx)
		if err != nil {
			return err
		}
		switch m[0] {
		case MsgStdout:
			s.stdout.Write(m[1:])
		case MsgStderr:
			s.stderr.Write(m[1:])
		case MsgResume:
			s.resumes++
		case MsgError:
			s.errs = append(s.errs, string(m[1:]))
		case MsgStopped:
			s.exitCode = int(m[1])
			return nil
		case MsgShutdown:
			return fmt.Errorf("server shut down")
		}
	}
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}
