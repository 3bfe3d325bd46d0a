package tc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/test/faultproxy"
)

// silentServer accepts connections, reads what comes and never answers.
// It counts the connections; Close ends them.
type silentServer struct {
	l     net.Listener
	conns atomic.Int32
	mu    sync.Mutex
	open  []net.Conn
}

func newSilentServer(t *testing.T) *silentServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &silentServer{l: l}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			s.mu.Lock()
			s.open = append(s.open, c)
			s.mu.Unlock()
			go func() { _, _ = io.Copy(io.Discard, c) }()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range s.open {
			c.Close()
		}
	})
	return s
}

func (s *silentServer) URL() string { return "http://" + s.l.Addr().String() }

// hangingHandler answers with start (headers and the first part of the
// body, when not empty) and then holds the request until it is abandoned.
func hangingHandler(t *testing.T, status int, start string, length int) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		if start != "" {
			w.Header().Set("Content-Length", strconv.Itoa(length))
			w.WriteHeader(status)
			io.WriteString(w, start)
			w.(http.Flusher).Flush()
		}
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func wantTimeout(t *testing.T, err error, text string) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	if !IsTimeout(err) || !errors.Is(err, ErrTimeout) {
		t.Errorf("got %v, want a timeout (ErrTimeout)", err)
	}
	if !strings.Contains(err.Error(), text) {
		t.Errorf("got %q, want it to contain %q", err, text)
	}
}

// A JSON call to a server that accepts the connection and never answers
// gives up each attempt after the attempt timeout, retries, and returns a
// timeout error.
func TestRequestAttemptTimeoutNoAnswer(t *testing.T) {
	s := newSilentServer(t)
	c := New(Config{RootURL: s.URL(), HTTPClient: &http.Client{}, Retries: 1,
		BaseDelay: time.Millisecond, MaxDelay: time.Millisecond, AttemptTimeout: 100 * time.Millisecond})
	err := c.Request(t.Context(), "queue", http.MethodGet, "/ping", nil, nil, nil)
	wantTimeout(t, err, "no complete answer within 100ms")
	if !strings.Contains(err.Error(), "giving up after 2 attempts") {
		t.Errorf("got %q, want 2 attempts", err)
	}
	if n := s.conns.Load(); n != 2 {
		t.Errorf("server saw %d connections, want 2", n)
	}
}

// The attempt timeout covers the body too: an answer that stops midway
// times out.
func TestRequestAttemptTimeoutMidBody(t *testing.T) {
	srv, n := hangingHandler(t, http.StatusOK, `{"tasks": [`, 100)
	c := New(Config{RootURL: srv.URL, HTTPClient: srv.Client(), Retries: -1, AttemptTimeout: 100 * time.Millisecond})
	var out map[string]any
	err := c.Request(t.Context(), "queue", http.MethodPost, "/claim-work/p/w", nil, map[string]any{}, &out)
	wantTimeout(t, err, "no complete answer within 100ms")
	if n.Load() != 1 {
		t.Errorf("server saw %d requests, want 1", n.Load())
	}
}

// An attempt that timed out is retried, and a later answer succeeds.
func TestRequestRetriesAfterAttemptTimeout(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			<-r.Context().Done()
			return
		}
		writeJSON(w, map[string]string{"ok": "yes"})
	}))
	t.Cleanup(srv.Close)
	c := New(Config{RootURL: srv.URL, HTTPClient: srv.Client(), BaseDelay: time.Millisecond, MaxDelay: time.Millisecond,
		AttemptTimeout: 100 * time.Millisecond})
	var out map[string]string
	if err := c.Request(RetryUntil(t.Context(), time.Now().Add(time.Minute)), "queue", http.MethodGet, "/x", nil, nil, &out); err != nil {
		t.Fatal(err)
	}
	if out["ok"] != "yes" || n.Load() < 2 {
		t.Errorf("got %v after %d requests, want an answer after the timed-out one", out, n.Load())
	}
}

// The caller's cancellation is not reported as a timeout.
func TestRequestCancelIsNotATimeout(t *testing.T) {
	s := newSilentServer(t)
	c := New(Config{RootURL: s.URL(), HTTPClient: &http.Client{}, AttemptTimeout: time.Minute})
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		for s.conns.Load() == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	err := c.Request(ctx, "queue", http.MethodGet, "/ping", nil, nil, nil)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
		t.Errorf("got %v, want context.Canceled and no ErrTimeout", err)
	}
}

// The transport New builds bounds the TLS handshake and the wait for
// response headers.
func TestDefaultTransportTimeouts(t *testing.T) {
	c := New(Config{RootURL: "https://tc.example.com"})
	tr, ok := c.http.Transport.(*http.Transport)
	if !ok {
		t.Fatalf("transport %T", c.http.Transport)
	}
	if tr.TLSHandshakeTimeout != DefaultTLSHandshakeTimeout || tr.ResponseHeaderTimeout != DefaultAttemptTimeout || tr.Proxy == nil || tr.DialContext == nil {
		t.Errorf("transport: TLS handshake %s, response header %s, proxy set %v", tr.TLSHandshakeTimeout, tr.ResponseHeaderTimeout, tr.Proxy != nil)
	}
	if c.http.Timeout != 0 {
		t.Errorf("the client has a total timeout %s, which would cut long transfers", c.http.Timeout)
	}

	s := newSilentServer(t)
	hc := &http.Client{Transport: newTransport(transportTimeouts{dial: time.Second, tlsHandshake: 100 * time.Millisecond, responseHeader: 100 * time.Millisecond})}
	t.Run("response header", func(t *testing.T) {
		_, err := hc.Get(s.URL() + "/x")
		if !IsTimeout(err) || !strings.Contains(err.Error(), "awaiting response headers") {
			t.Errorf("got %v, want a response header timeout", err)
		}
	})
	t.Run("TLS handshake", func(t *testing.T) {
		_, err := hc.Get("https://" + s.l.Addr().String() + "/x")
		if !IsTimeout(err) || !strings.Contains(err.Error(), "TLS handshake timeout") {
			t.Errorf("got %v, want a TLS handshake timeout", err)
		}
	})
	t.Run("through the client", func(t *testing.T) {
		c := New(Config{RootURL: s.URL(), Retries: -1, AttemptTimeout: 100 * time.Millisecond})
		err := c.Request(t.Context(), "queue", http.MethodGet, "/ping", nil, nil, nil)
		if !IsTimeout(err) || !errors.Is(err, ErrTimeout) {
			t.Errorf("got %v, want a timeout", err)
		}
	})
}

// Downloads are bounded by the stall timeout: no answer at all is retried;
// a body that stops before any byte reached the writer is retried; one
// that stops after is not (the writer holds part of it).
func TestDownloadStalls(t *testing.T) {
	newClient := func(root string, hc *http.Client) *Client {
		return New(Config{RootURL: root, HTTPClient: hc, Retries: 1, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond,
			StallTimeout: 100 * time.Millisecond})
	}
	t.Run("no answer", func(t *testing.T) {
		s := newSilentServer(t)
		var buf bytes.Buffer
		_, err := newClient(s.URL(), &http.Client{}).Download(t.Context(), s.URL()+"/artifact", &buf)
		wantTimeout(t, err, "no progress for 100ms")
		if s.conns.Load() != 2 || buf.Len() != 0 {
			t.Errorf("%d connections, %d bytes written; want 2 and 0", s.conns.Load(), buf.Len())
		}
	})
	t.Run("mid-body", func(t *testing.T) {
		srv, n := hangingHandler(t, http.StatusOK, "first part", 100)
		var buf bytes.Buffer
		_, err := newClient(srv.URL, srv.Client()).Download(t.Context(), srv.URL+"/artifact", &buf)
		wantTimeout(t, err, "no progress for 100ms")
		if n.Load() != 1 || buf.String() != "first part" {
			t.Errorf("%d requests, wrote %q; want 1 and the first part", n.Load(), buf.String())
		}
	})
	t.Run("before the body, then whole", func(t *testing.T) {
		var n atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			if n.Add(1) == 1 {
				w.Header().Set("Content-Length", "5")
				w.WriteHeader(http.StatusOK)
				w.(http.Flusher).Flush()
				<-r.Context().Done()
				return
			}
			io.WriteString(w, "whole")
		}))
		t.Cleanup(srv.Close)
		var buf bytes.Buffer
		// A deadline rather than one retry: on a loaded machine the good
		// answer may itself pause longer than the tiny stall timeout.
		ctx := RetryUntil(t.Context(), time.Now().Add(time.Minute))
		ct, err := newClient(srv.URL, srv.Client()).Download(ctx, srv.URL+"/artifact", &buf)
		if err != nil {
			t.Fatal(err)
		}
		if buf.String() != "whole" || ct != "text/plain" || n.Load() < 2 {
			t.Errorf("got %q (%s) after %d requests", buf.String(), ct, n.Load())
		}
	})
}

// Open's body times out a Read that waits too long, but not a caller that
// takes its time between reads.
func TestOpenStall(t *testing.T) {
	c := func(srv *httptest.Server) *Client {
		return New(Config{RootURL: srv.URL, HTTPClient: srv.Client(), StallTimeout: 100 * time.Millisecond})
	}
	t.Run("stalled server", func(t *testing.T) {
		srv, _ := hangingHandler(t, http.StatusOK, "abc", 10)
		b, err := c(srv).Open(t.Context(), srv.URL+"/img")
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		got, err := io.ReadAll(b)
		wantTimeout(t, err, "no progress for 100ms")
		if string(got) != "abc" {
			t.Errorf("read %q before the stall", got)
		}
	})
	t.Run("slow reader", func(t *testing.T) {
		body := strings.Repeat("x", 32<<10) // fits in the loopback socket buffers
		written := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			io.WriteString(w, body)
			w.(http.Flusher).Flush()
			close(written)
		}))
		t.Cleanup(srv.Close)
		b, err := c(srv).Open(t.Context(), srv.URL+"/img")
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		// The whole body is in the connection's buffers: no Read has to
		// wait for the server, only the caller is slow.
		select {
		case <-written:
		case <-time.After(10 * time.Second):
			t.Fatal("the server could not write the body")
		}
		var got bytes.Buffer
		buf := make([]byte, 8<<10)
		for {
			time.Sleep(150 * time.Millisecond) // longer than the stall timeout
			n, err := b.Read(buf)
			got.Write(buf[:n])
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("after %d bytes: %v", got.Len(), err)
			}
		}
		if got.String() != body {
			t.Errorf("read %d bytes, want %d", got.Len(), len(body))
		}
	})
}

// An upload whose server stops taking bytes (or never answers after the
// last one) is aborted after the stall timeout and retried from the start
// of the body.
func TestPutArtifactStallRetried(t *testing.T) {
	content := bytes.Repeat([]byte("0123456789abcdef"), 1<<19) // 8 MiB, more than the loopback socket buffers hold
	var n atomic.Int32
	var mu sync.Mutex
	var stored []byte
	// A handler that stops reading the body cannot see the client go away,
	// so the held handlers are let go when the test ends.
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) {
		case 1: // take a little, then stop reading
			_, _ = io.CopyN(io.Discard, r.Body, 1<<10)
			<-stop
		case 2: // take everything, never answer
			_, _ = io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-stop:
			}
		default:
			b, err := io.ReadAll(r.Body)
			if err != nil {
				return
			}
			mu.Lock()
			stored = b
			mu.Unlock()
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(stop) })
	c := New(Config{RootURL: srv.URL, HTTPClient: srv.Client(), BaseDelay: time.Millisecond, MaxDelay: time.Millisecond,
		StallTimeout: 2 * time.Second})
	opens := 0
	open := func(context.Context) (io.ReadCloser, error) {
		opens++
		return io.NopCloser(bytes.NewReader(content)), nil
	}
	if err := c.PutArtifact(t.Context(), srv.URL+"/bucket/big", open, int64(len(content)), "application/octet-stream", ""); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !bytes.Equal(stored, content) || opens != 3 || n.Load() != 3 {
		t.Errorf("stored %d of %d bytes (equal %v) after %d opens, %d requests", len(stored), len(content), bytes.Equal(stored, content), opens, n.Load())
	}
}

// A stall with retries disabled is reported as a timeout.
func TestPutArtifactStallTimeout(t *testing.T) {
	s := newSilentServer(t)
	c := New(Config{RootURL: s.URL(), HTTPClient: &http.Client{}, Retries: -1, StallTimeout: 100 * time.Millisecond})
	open := func(context.Context) (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("body")), nil }
	err := c.PutArtifact(t.Context(), s.URL()+"/bucket/x?X-Amz-Signature=secret", open, 4, "text/plain", "")
	wantTimeout(t, err, "no progress for 100ms")
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("the error shows the presigned query: %v", err)
	}
}

// replayServer answers the first request, then, for the first request
// after it, reads the request and closes the connection without an
// answer, so that net/http's transport resends it as it stands; it
// refuses a nonce it has seen with a 401, as Taskcluster does.
type replayServer struct {
	*httptest.Server
	v        *verifier
	requests atomic.Int32
	refused  atomic.Int32
}

func newReplayServer(t *testing.T) *replayServer {
	t.Helper()
	s := &replayServer{v: testVerifier()}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := s.v.verify(r); err != nil {
			s.refused.Add(1)
			writeTCError(w, http.StatusUnauthorized, "AuthenticationFailed", err.Error())
			return
		}
		if s.requests.Add(1) == 2 {
			c, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			c.Close()
			return
		}
		writeJSON(w, map[string]string{"path": r.URL.Path})
	}))
	t.Cleanup(s.Close)
	return s
}

// A GET that net/http resends on its own with the same Hawk header after a
// dropped keep-alive connection is refused for its nonce; the client signs
// it again and it succeeds, for JSON calls and downloads alike.
func TestReplayedNonceIsSignedAgain(t *testing.T) {
	for _, tc := range []struct {
		name string
		call func(*Client, string) error
	}{
		{"request", func(c *Client, _ string) error {
			var out map[string]string
			return c.Request(context.Background(), "queue", http.MethodGet, "/task/T", nil, nil, &out)
		}},
		{"download", func(c *Client, root string) error {
			_, err := c.Download(context.Background(), root+"/api/queue/v1/task/T/artifacts/public%2Fx", io.Discard)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newReplayServer(t)
			c := testClient(s.Server, -1) // no retries: only the re-signing may save the call
			if err := tc.call(c, s.URL); err != nil {
				t.Fatalf("first call: %v", err)
			}
			if err := tc.call(c, s.URL); err != nil {
				t.Fatalf("call over the dropped connection: %v", err)
			}
			if s.refused.Load() != 1 {
				t.Errorf("the server refused %d replayed nonces, want 1 (the transport's resend)", s.refused.Load())
			}
		})
	}
}

// A 401 that is not about the nonce is returned at once.
func TestOther401IsNotResent(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		writeTCError(w, http.StatusUnauthorized, "AuthenticationFailed", "bad Hawk MAC for client \"x\"")
	}))
	t.Cleanup(srv.Close)
	err := testClient(srv, 3).Request(t.Context(), "queue", http.MethodGet, "/task/T", nil, nil, nil)
	if StatusCode(err) != http.StatusUnauthorized || !strings.Contains(err.Error(), "bad Hawk MAC") || n.Load() != 1 {
		t.Errorf("got %v after %d requests, want the 401 after 1", err, n.Load())
	}
}

// storageServer stores PUT bodies (the last one per path wins) and counts them.
type storageServer struct {
	*httptest.Server
	mu     sync.Mutex
	bodies map[string][]byte
	puts   int
}

func newStorageServer(t *testing.T) *storageServer {
	t.Helper()
	s := &storageServer{bodies: map[string][]byte{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.puts++
		s.bodies[r.URL.Path] = b
	}))
	t.Cleanup(s.Close)
	return s
}

func startProxy(t *testing.T, cfg faultproxy.Config) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// An upload through a connection that drops mid-body is retried from the
// start, and the stored bytes are exactly the artifact's.
func TestPutArtifactDroppedMidBody(t *testing.T) {
	storage := newStorageServer(t)
	p := startProxy(t, faultproxy.Config{Target: storage.URL})
	p.Queue(faultproxy.DropRequestBody, faultproxy.DropResponseBody, faultproxy.ErrorAfter)
	content := bytes.Repeat([]byte("artifact bytes "), 100_000)
	c := New(Config{RootURL: p.URL(), BaseDelay: time.Millisecond, MaxDelay: time.Millisecond})
	opens := 0
	open := func(context.Context) (io.ReadCloser, error) {
		opens++
		return io.NopCloser(bytes.NewReader(content)), nil
	}
	if err := c.PutArtifact(t.Context(), p.URL()+"/bucket/public/big.bin", open, int64(len(content)), "application/octet-stream", ""); err != nil {
		t.Fatal(err)
	}
	storage.mu.Lock()
	defer storage.mu.Unlock()
	got := storage.bodies["/bucket/public/big.bin"]
	if sha256.Sum256(got) != sha256.Sum256(content) {
		t.Errorf("stored %d bytes, want the %d of the artifact", len(got), len(content))
	}
	if opens != 4 {
		t.Errorf("body opened %d times, want 4", opens)
	}
	counts := p.Counts()
	if counts.Injected[faultproxy.DropRequestBody] != 1 || counts.Injected[faultproxy.DropResponseBody] != 1 || counts.Injected[faultproxy.ErrorAfter] != 1 {
		t.Errorf("proxy counts %+v", counts)
	}
}

// Under a retry deadline, an upload that keeps failing is retried until
// the deadline and then given up.
func TestPutArtifactHonoursRetryDeadline(t *testing.T) {
	storage := newStorageServer(t)
	p := startProxy(t, faultproxy.Config{Target: storage.URL, Rates: faultproxy.Rates{DropRequestBody: 1}})
	c := New(Config{RootURL: p.URL(), Retries: 1, BaseDelay: 10 * time.Millisecond, MaxDelay: 20 * time.Millisecond})
	opens := 0
	open := func(context.Context) (io.ReadCloser, error) {
		opens++
		return io.NopCloser(strings.NewReader("some bytes")), nil
	}
	ctx := RetryUntil(t.Context(), time.Now().Add(time.Second))
	err := c.PutArtifact(ctx, p.URL()+"/bucket/x", open, 10, "text/plain", "")
	if err == nil || !strings.Contains(err.Error(), "retry deadline") {
		t.Fatalf("got %v, want the retry deadline to end the upload", err)
	}
	// More attempts than Retries allows: the deadline, not the count, decided.
	if opens < 3 {
		t.Errorf("body opened %d times, want more than Retries+1", opens)
	}
	if storage.puts != 0 {
		t.Errorf("storage got %d PUTs", storage.puts)
	}
}

// The object-service upload survives a storage PUT dropped mid-body.
func TestUploadObjectArtifactDroppedMidBody(t *testing.T) {
	w := newObjectWorld(t, map[string]string{"Content-Type": "text/html"})
	p := startProxy(t, faultproxy.Config{Target: w.srv.URL, Rates: faultproxy.Rates{
		Match: func(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/storage/") },
	}})
	p.Queue(faultproxy.DropRequestBody)
	w.mu.Lock()
	w.storage = p.URL()
	w.mu.Unlock()
	opens := 0
	if err := w.runClient().UploadObjectArtifact(t.Context(), "T", 0, reportUpload(&opens)); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.putBodys) != 1 || w.putBodys[0] != reportBody {
		t.Errorf("storage got %q, want the report once", w.putBodys)
	}
	if opens != 2 || p.Counts().Injected[faultproxy.DropRequestBody] != 1 {
		t.Errorf("body opened %d times, proxy counts %+v", opens, p.Counts())
	}
	sum := sha256.Sum256([]byte(reportBody))
	if hex.EncodeToString(sum[:]) != reportSHA256 {
		t.Error("reportSHA256 is stale")
	}
}
