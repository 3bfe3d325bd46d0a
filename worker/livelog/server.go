package livelog

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Config configures a [Server].
type Config struct {
	// Address is the IP address to listen on ("" for every interface).
	Address string
	// Port is the port to listen on (0: any free port). With PortRangeEnd
	// set, Port..PortRangeEnd is a range and the first free port is used.
	Port, PortRangeEnd int
	// CertFile and KeyFile, when both set, make the server speak HTTPS.
	CertFile, KeyFile string
	// WriteTimeout drops a reader that has not taken a chunk within it
	// (0: one minute).
	WriteTimeout time.Duration
	// Logger receives the server's log (nil: discarded).
	Logger *slog.Logger
}

// Server serves registered streams at /log/<token>.
type Server struct {
	ln      net.Listener
	srv     *http.Server
	tls     bool
	timeout time.Duration
	log     *slog.Logger
	done    chan struct{}
	ctx     context.Context // cancelled by Close: ends every reader
	cancel  context.CancelFunc

	mu      sync.Mutex
	streams map[string]*Stream
}

// Start listens as cfg says and serves until Close.
func Start(cfg Config) (*Server, error) {
	var tlsCfg *tls.Config
	if cfg.CertFile != "" || cfg.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("livelog: TLS certificate: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := listen(cfg.Address, cfg.Port, cfg.PortRangeEnd)
	if err != nil {
		return nil, err
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	s := &Server{
		ln:      ln,
		tls:     tlsCfg != nil,
		timeout: cfg.WriteTimeout,
		log:     cfg.Logger,
		done:    make(chan struct{}),
		streams: map[string]*Stream{},
	}
	if s.timeout <= 0 {
		s.timeout = time.Minute
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	mux := http.NewServeMux()
	mux.HandleFunc("GET /log/{token}", s.serveLog)
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return s.ctx },
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("live log server stopped", "error", err)
		}
	}()
	return s, nil
}

// listen binds the first free port of port..end (just port when end is 0).
func listen(addr string, port, end int) (net.Listener, error) {
	if end == 0 {
		end = port
	}
	var errs []error
	for p := port; p <= end; p++ {
		ln, err := net.Listen("tcp", net.JoinHostPort(addr, strconv.Itoa(p)))
		if err == nil {
			return ln, nil
		}
		errs = append(errs, err)
	}
	if port == end {
		return nil, fmt.Errorf("livelog: listen: %w", errors.Join(errs...))
	}
	return nil, fmt.Errorf("livelog: no free port in %d-%d: %w", port, end, errs[len(errs)-1])
}

// Port is the port the server listens on.
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// Scheme is "https" or "http".
func (s *Server) Scheme() string {
	if s.tls {
		return "https"
	}
	return "http"
}

// URL is the address of token's stream for clients that reach this machine
// as host.
func (s *Server) URL(host, token string) string {
	return s.Scheme() + "://" + net.JoinHostPort(host, strconv.Itoa(s.Port())) + "/log/" + token
}

// Add registers st under a new unguessable token (22 URL-safe characters)
// and returns the token.
func (s *Server) Add(st *Stream) string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	token := base64.RawURLEncoding.EncodeToString(b[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	s.streams[token] = st
	return token
}

// Drop unregisters token; readers already attached go on to the end.
func (s *Server) Drop(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.streams, token)
}

// Close stops the server and drops every reader.
func (s *Server) Close() error {
	s.cancel()
	err := s.srv.Close()
	<-s.done
	return err
}

func (s *Server) serveLog(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	s.mu.Lock()
	st := s.streams[token]
	s.mu.Unlock()
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	if st == nil {
		http.Error(w, "no such log", http.StatusNotFound)
		return
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Accel-Buffering", "no")
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	rw := &readerWriter{w: w, rc: http.NewResponseController(w), timeout: s.timeout}
	err := st.Follow(r.Context(), rw, 0, rw.flush)
	switch {
	case errors.Is(err, errRemoved) && !rw.started:
		// The task ended between the lookup and the attach.
		h.Del("Content-Type")
		http.Error(w, "no such log", http.StatusNotFound)
	case err != nil && !errors.Is(err, context.Canceled):
		s.log.Debug("live log reader dropped", "error", err, "remote", r.RemoteAddr)
	}
}

// readerWriter writes a stream to one reader: the status line goes out
// with the first write or flush, and writes have a deadline so that a
// stalled reader is dropped instead of holding its goroutine forever. The
// deadline is moved forward when a quarter of the timeout has passed since
// it was last set, so a write always has at least three quarters of it.
type readerWriter struct {
	w        http.ResponseWriter
	rc       *http.ResponseController
	timeout  time.Duration
	started  bool
	deadline time.Time // when the deadline was last set
}

func (d *readerWriter) start() error {
	if now := time.Now(); now.Sub(d.deadline) >= d.timeout/4 {
		if err := d.rc.SetWriteDeadline(now.Add(d.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		d.deadline = now
	}
	if !d.started {
		d.started = true
		d.w.WriteHeader(http.StatusOK)
	}
	return nil
}

func (d *readerWriter) Write(p []byte) (int, error) {
	if err := d.start(); err != nil {
		return 0, err
	}
	return d.w.Write(p)
}

func (d *readerWriter) flush() error {
	if err := d.start(); err != nil {
		return err
	}
	return d.rc.Flush()
}
