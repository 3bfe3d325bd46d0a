package interactive

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"go.dockerworker.dev/docker-worker/worker/docker"
)

// SocketPath is the path of a task's shell socket below its token.
const SocketPath = "/shell.sock"

// DefaultMaxSessions is how many sessions one task allows at a time.
const DefaultMaxSessions = 10

// maxMessage bounds one websocket message from a client.
const maxMessage = 16 << 20

// Process is a process started in a task container (a *docker.Exec).
type Process interface {
	// Output is the raw terminal stream (TTY) or the daemon's multiplexed
	// stdout/stderr frames; see [docker.Exec.Output].
	Output() io.Reader
	TTY() bool
	Write(p []byte) (int, error)
	CloseStdin() error
	Resize(ctx context.Context, height, width uint) error
	ExitCode(ctx context.Context) (code int, running bool, err error)
	Close() error
}

// Execer starts processes in containers.
type Execer interface {
	Exec(ctx context.Context, containerID string, opts docker.ExecOptions) (Process, error)
}

// DockerExecer is the [Execer] of a Docker client.
type DockerExecer struct{ Client *docker.Client }

// Exec implements [Execer].
func (d DockerExecer) Exec(ctx context.Context, id string, opts docker.ExecOptions) (Process, error) {
	e, err := d.Client.Exec(ctx, id, opts)
	if err != nil {
		return nil, err
	}
	return e, nil
}

// ServerConfig configures a [Server].
type ServerConfig struct {
	// Address is the IP address to listen on ("" for every interface).
	Address string
	// Port is the port to listen on (0: a free port the system picks).
	// With PortRangeEnd set, Port..PortRangeEnd is a range and the first
	// port of it that is free is used.
	Port, PortRangeEnd int
	// CertFile and KeyFile, when both set, make the server speak TLS (wss).
	CertFile, KeyFile string
	// Logger receives the server's log (nil: discarded).
	Logger *slog.Logger
}

// Server serves the shell sockets of the tasks registered with it at
// /<token>/shell.sock, where token is unguessable and fresh for each task.
type Server struct {
	ln     net.Listener
	srv    *http.Server
	tls    bool
	log    *slog.Logger
	done   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	targets map[string]*Target
}

// StartServer listens as cfg says and serves until Close.
func StartServer(cfg ServerConfig) (*Server, error) {
	var tlsCfg *tls.Config
	if cfg.CertFile != "" || cfg.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("interactive: TLS certificate: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := listen(cfg.Address, cfg.Port, cfg.PortRangeEnd)
	if err != nil {
		return nil, fmt.Errorf("interactive: %w", err)
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	s := &Server{ln: ln, tls: tlsCfg != nil, log: cfg.Logger, done: make(chan struct{}), targets: map[string]*Target{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{token}"+SocketPath, s.serveShell)
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return s.ctx },
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("interactive server stopped", "error", err)
		}
	}()
	return s, nil
}

// listen listens on address at port, or at the first free port of
// port..end when end is set.
func listen(address string, port, end int) (net.Listener, error) {
	if end == 0 || port == 0 {
		ln, err := net.Listen("tcp", net.JoinHostPort(address, strconv.Itoa(port)))
		if err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
		return ln, nil
	}
	var last error
	for p := port; p <= end; p++ {
		ln, err := net.Listen("tcp", net.JoinHostPort(address, strconv.Itoa(p)))
		if err == nil {
			return ln, nil
		}
		last = err
	}
	return nil, fmt.Errorf("listen: no free port in %d-%d: %w", port, end, last)
}

// Close stops the server and ends every session.
func (s *Server) Close() error {
	s.cancel()
	err := s.srv.Close()
	<-s.done
	return err
}

// Port is the port the server listens on.
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// URL is the websocket address of token's shell for clients that reach
// this machine as host.
func (s *Server) URL(host, token string) string {
	scheme := "ws"
	if s.tls {
		scheme = "wss"
	}
	return scheme + "://" + net.JoinHostPort(host, strconv.Itoa(s.Port())) + "/" + token + SocketPath
}

// Target is a container whose shell the server serves.
type Target struct {
	ContainerID string
	Docker      Execer
	// MaxSessions bounds concurrent sessions (0: DefaultMaxSessions).
	MaxSessions int
	// Opened and Closed, when set, are told when a session starts and
	// ends (the keep-alive counts them).
	Opened, Closed func()

	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	active int
}

// Add registers t under a new unguessable token (22 URL-safe characters)
// and returns the token.
func (s *Server) Add(t *Target) string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	token := base64.RawURLEncoding.EncodeToString(b[:])
	t.ctx, t.cancel = context.WithCancel(s.ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.targets[token] = t
	return token
}

// Drop unregisters token and ends its sessions.
func (s *Server) Drop(token string) {
	s.mu.Lock()
	t := s.targets[token]
	delete(s.targets, token)
	s.mu.Unlock()
	if t != nil {
		t.cancel()
	}
}

func (s *Server) target(token string) *Target {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.targets[token]
}

func (t *Target) acquire() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	limit := t.MaxSessions
	if limit <= 0 {
		limit = DefaultMaxSessions
	}
	if t.active >= limit {
		return false
	}
	t.active++
	if t.Opened != nil {
		t.Opened()
	}
	return true
}

func (t *Target) release() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.active--
	if t.Closed != nil {
		t.Closed()
	}
}

func (s *Server) serveShell(w http.ResponseWriter, r *http.Request) {
	t := s.target(r.PathValue("token"))
	if t == nil {
		http.NotFound(w, r)
		return
	}
	// The token is the secret; the page opening the socket is served by
	// the Taskcluster UI, another origin.
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		s.log.Debug("interactive: websocket upgrade failed", "error", err)
		return
	}
	conn.SetReadLimit(maxMessage)
	ctx, cancel := context.WithCancel(t.ctx)
	defer cancel()
	if !t.acquire() {
		_ = conn.Write(ctx, websocket.MessageBinary, encode(MsgError, []byte("Too many sessions active!")))
		_ = conn.Close(websocket.StatusPolicyViolation, "too many sessions")
		return
	}
	defer t.release()
	q := r.URL.Query()
	opts := docker.ExecOptions{Cmd: q["command"], TTY: strings.EqualFold(q.Get("tty"), "true")}
	serveSession(ctx, conn, t.Docker, t.ContainerID, opts, s.log)
}

// serveSession runs one exec session over conn until the process ends,
// the client goes away or ctx is done (then the client is told the server
// shut down).
func serveSession(ctx context.Context, conn *websocket.Conn, d Execer, containerID string, opts docker.ExecOptions, log *slog.Logger) {
	// Connection calls get a context that is never cancelled: cancelling
	// one would drop the connection before the client is told why.
	wctx := context.WithoutCancel(ctx)
	send := func(m []byte) error { return conn.Write(wctx, websocket.MessageBinary, m) }
	p, err := d.Exec(ctx, containerID, opts)
	if err != nil {
		log.Debug("interactive: exec failed", "error", err)
		_ = send(encode(MsgError, []byte("cannot start the command: "+err.Error())))
		_ = conn.Close(websocket.StatusInternalError, "exec failed")
		return
	}
	defer p.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		// The task is over or the server closes.
		tctx, tcancel := context.WithTimeout(wctx, time.Second)
		_ = conn.Write(tctx, websocket.MessageBinary, []byte{MsgShutdown})
		tcancel()
		_ = p.Close()
		_ = conn.Close(websocket.StatusGoingAway, "shutdown")
	})
	defer stop()
	var fl flow
	fl.init()
	outDone := make(chan struct{})
	go func() {
		defer close(outDone)
		err := outputMessages(p.Output(), p.TTY(), func(m []byte) error {
			if err := fl.wait(sctx); err != nil {
				return err
			}
			return send(m)
		})
		if err != nil || sctx.Err() != nil {
			return
		}
		code, err := exitCode(sctx, p)
		if err != nil {
			_ = send(encode(MsgError, []byte(err.Error())))
			_ = conn.Close(websocket.StatusInternalError, "exit code unknown")
			return
		}
		if send(stoppedMessage(code)) == nil {
			_ = conn.Close(websocket.StatusNormalClosure, "")
		}
	}()
	if err := send([]byte{MsgResume}); err == nil {
		readInput(wctx, conn, p, &fl, send)
	}
	stop()
	cancel()
	_ = p.Close()
	<-outDone
	_ = conn.CloseNow()
}

// readInput handles the client's messages until the connection ends.
func readInput(ctx context.Context, conn *websocket.Conn, p Process, fl *flow, send func([]byte) error) {
	for {
		_, m, err := conn.Read(ctx)
		if err != nil {
			return
		}
		if len(m) == 0 {
			continue
		}
		switch m[0] {
		case MsgStdin:
			if _, err := p.Write(m[1:]); err != nil {
				return
			}
		case MsgEnd:
			_ = p.CloseStdin()
		case MsgPause:
			fl.set(true)
		case MsgResume:
			fl.set(false)
		case MsgResize:
			if !p.TTY() {
				_ = send(encode(MsgError, []byte("cannot resize, not a tty instance")))
				continue
			}
			h, w, err := decodeResize(m)
			if err == nil {
				err = p.Resize(ctx, uint(h), uint(w))
			}
			if err != nil {
				_ = send(encode(MsgError, []byte(err.Error())))
			}
		}
	}
}

// exitCode waits for the daemon to report the process's exit code (the
// output may end a moment before the exit is recorded).
func exitCode(ctx context.Context, p Process) (int, error) {
	for range 50 {
		code, running, err := p.ExitCode(ctx)
		if err != nil {
			return 0, err
		}
		if !running {
			return code, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return 0, errors.New("the process is still running after its output ended")
}

// flow holds output back while the client has paused it.
type flow struct {
	mu     sync.Mutex
	paused bool
	resume chan struct{} // closed when output may go on
}

func (f *flow) init() {
	f.resume = make(chan struct{})
	close(f.resume)
}

func (f *flow) set(paused bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if paused == f.paused {
		return
	}
	f.paused = paused
	if paused {
		f.resume = make(chan struct{})
	} else {
		close(f.resume)
	}
}

func (f *flow) wait(ctx context.Context) error {
	f.mu.Lock()
	ch := f.resume
	f.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
