// Package runnerproto speaks Taskcluster worker-runner's line protocol
// from the worker's side. worker-runner starts the worker with pipes on
// its stdin and stdout; each message is one line "~" followed by a JSON
// object whose "type" names it. Lines without the "~{" prefix (the
// worker's own JSON log) are not messages: the runner logs them.
//
// The runner opens with welcome {capabilities}; the worker answers hello
// with the capabilities both sides have, and from then on only messages of
// those capabilities are exchanged. The worker side here knows three:
// graceful-termination (runner → worker, {"finish-tasks": bool}),
// new-credentials (runner → worker, {"client-id", "access-token",
// "certificate"?}) and shutdown (worker → runner, no body).
package runnerproto

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
)

// Capabilities this side of the protocol implements.
const (
	CapGracefulTermination = "graceful-termination"
	CapNewCredentials      = "new-credentials"
	CapShutdown            = "shutdown"
)

// Message types.
const (
	typeWelcome             = "welcome"
	typeHello               = "hello"
	typeGracefulTermination = "graceful-termination"
	typeNewCredentials      = "new-credentials"
	typeShutdown            = "shutdown"
)

// prefix starts every protocol line.
const prefix = "~"

// maxLine bounds one line read from the runner (credentials with a
// certificate are a few kilobytes).
const maxLine = 1 << 20

// ErrNotNegotiated is returned by Conn.Shutdown when the runner has not
// agreed to the shutdown capability (or the connection ended before the
// welcome).
var ErrNotNegotiated = errors.New("runnerproto: the runner did not agree to this capability")

// Credentials are the worker's new Taskcluster credentials, as a
// new-credentials message gives them.
type Credentials struct {
	ClientID    string
	AccessToken string
	Certificate string // "" when the message has none
}

// Handlers receive the runner's messages. A nil handler leaves its
// capability out of the hello, so the runner does not send it.
type Handlers struct {
	// GracefulTermination is called for graceful-termination: finishTasks
	// says whether running tasks may finish.
	GracefulTermination func(finishTasks bool)
	// NewCredentials is called for new-credentials, with the client id
	// and access token checked to be non-empty.
	NewCredentials func(Credentials)
}

// Conn is the worker's end of the protocol. Its Send side is safe for
// concurrent use.
type Conn struct {
	in     io.Reader
	out    io.Writer
	h      Handlers
	logger *slog.Logger
	// offer are the capabilities this side offers in its hello.
	offer []string

	writeMu sync.Mutex
	// ready is closed once the hello is sent (or the input ended before
	// a welcome came); caps is set before that.
	ready     chan struct{}
	readyOnce sync.Once
	caps      []string
}

// New returns a Conn reading the runner's lines from in and writing
// protocol lines to out. out is usually also where the worker logs: each
// protocol line is written with one Write call, so a writer that keeps
// each Write whole (see LineWriter) keeps log and protocol lines apart.
// shutdown says whether the worker offers the shutdown capability.
func New(in io.Reader, out io.Writer, h Handlers, shutdown bool, logger *slog.Logger) *Conn {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Conn{in: in, out: out, h: h, logger: logger, ready: make(chan struct{})}
	if h.GracefulTermination != nil {
		c.offer = append(c.offer, CapGracefulTermination)
	}
	if h.NewCredentials != nil {
		c.offer = append(c.offer, CapNewCredentials)
	}
	if shutdown {
		c.offer = append(c.offer, CapShutdown)
	}
	return c
}

// Run reads the runner's lines until the input ends or ctx is done,
// answering the welcome and calling the handlers. It returns nil when the
// input ends (the runner closed the pipe) and ctx's error when ctx ends
// first; a read error is returned wrapped.
func (c *Conn) Run(ctx context.Context) error {
	defer c.markReady(nil)
	lines := make(chan string)
	readErr := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(c.in)
		sc.Buffer(make([]byte, 0, 4096), maxLine)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				readErr <- nil
				return
			}
		}
		readErr <- sc.Err()
	}()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-readErr:
			if err != nil {
				return fmt.Errorf("runnerproto: read from the runner: %w", err)
			}
			return nil
		case line := <-lines:
			c.handle(line)
		}
	}
}

// handle acts on one line from the runner.
func (c *Conn) handle(line string) {
	line = strings.TrimRight(line, "\r")
	if !strings.HasPrefix(line, prefix+"{") {
		if strings.TrimSpace(line) != "" {
			c.logger.Warn("worker-runner sent a line that is not a protocol message", "line", line)
		}
		return
	}
	var msg struct {
		Type         string   `json:"type"`
		Capabilities []string `json:"capabilities"`
		FinishTasks  *bool    `json:"finish-tasks"`
		ClientID     string   `json:"client-id"`
		AccessToken  string   `json:"access-token"`
		Certificate  string   `json:"certificate"`
	}
	if err := json.Unmarshal([]byte(line[len(prefix):]), &msg); err != nil {
		c.logger.Warn("worker-runner sent a message that is not JSON", "error", err)
		return
	}
	if msg.Type == typeWelcome {
		c.welcome(msg.Capabilities)
		return
	}
	if !c.negotiated() {
		c.logger.Warn("worker-runner message before its welcome, ignored", "type", msg.Type)
		return
	}
	switch msg.Type {
	case typeGracefulTermination:
		if !c.Has(CapGracefulTermination) {
			break
		}
		finish := msg.FinishTasks != nil && *msg.FinishTasks
		c.logger.Info("worker-runner asks the worker to stop", "finishTasks", finish)
		c.h.GracefulTermination(finish)
		return
	case typeNewCredentials:
		if !c.Has(CapNewCredentials) {
			break
		}
		if msg.ClientID == "" || msg.AccessToken == "" {
			c.logger.Error("worker-runner sent new credentials without client-id or access-token, ignored")
			return
		}
		c.logger.Info("worker-runner sent new credentials", "clientId", msg.ClientID)
		c.h.NewCredentials(Credentials{ClientID: msg.ClientID, AccessToken: msg.AccessToken, Certificate: msg.Certificate})
		return
	}
	c.logger.Warn("worker-runner message of a capability not agreed on, ignored", "type", msg.Type)
}

// welcome answers the runner's welcome with the capabilities both sides
// have; a second welcome is ignored.
func (c *Conn) welcome(runner []string) {
	if c.negotiated() {
		c.logger.Warn("worker-runner sent a second welcome, ignored")
		return
	}
	caps := []string{}
	for _, cp := range c.offer {
		if slices.Contains(runner, cp) {
			caps = append(caps, cp)
		}
	}
	if err := c.send(map[string]any{"type": typeHello, "capabilities": caps}); err != nil {
		c.logger.Error("cannot answer worker-runner's welcome", "error", err)
	}
	c.logger.Info("worker-runner protocol started", "capabilities", caps, "runnerCapabilities", runner)
	c.markReady(caps)
}

func (c *Conn) markReady(caps []string) {
	c.readyOnce.Do(func() {
		c.caps = caps
		close(c.ready)
	})
}

func (c *Conn) negotiated() bool {
	select {
	case <-c.ready:
		return true
	default:
		return false
	}
}

// Has reports whether both sides agreed on capability cp (false before
// the welcome).
func (c *Conn) Has(cp string) bool {
	return c.negotiated() && slices.Contains(c.caps, cp)
}

// Shutdown asks the runner to shut the worker's host down (worker-runner
// removes the worker from worker-manager, else shuts the machine down). It
// waits for the welcome (or ctx) first; without the shutdown capability
// it returns ErrNotNegotiated.
func (c *Conn) Shutdown(ctx context.Context) error {
	select {
	case <-c.ready:
	case <-ctx.Done():
		return fmt.Errorf("runnerproto: shutdown: %w", ctx.Err())
	}
	if !c.Has(CapShutdown) {
		return ErrNotNegotiated
	}
	return c.send(map[string]any{"type": typeShutdown})
}

// send writes one protocol line with a single Write.
func (c *Conn) send(msg map[string]any) error {
	b, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("runnerproto: encode %v: %w", msg["type"], err)
	}
	line := make([]byte, 0, len(prefix)+len(b)+1)
	line = append(append(append(line, prefix...), b...), '\n')
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if _, err := c.out.Write(line); err != nil {
		return fmt.Errorf("runnerproto: send %v: %w", msg["type"], err)
	}
	return nil
}

// LineWriter serializes Writes to W, so that each Write (one log record,
// one protocol line) reaches W whole, never interleaved with another.
type LineWriter struct {
	mu sync.Mutex
	W  io.Writer
}

// Write implements io.Writer.
func (w *LineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.W.Write(p)
}
