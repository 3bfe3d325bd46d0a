package livelog

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func newStream(t *testing.T) *Stream {
	t.Helper()
	s, err := NewStream(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Remove() })
	return s
}

// blockingWriter never returns from Write until released: a stalled reader.
type blockingWriter struct {
	started chan struct{}
	release chan struct{}
	once    sync.Once
}

func (b *blockingWriter) Write(p []byte) (int, error) {
	b.once.Do(func() { close(b.started) })
	<-b.release
	return 0, errors.New("released")
}

func TestStreamFollow(t *testing.T) {
	s := newStream(t)
	io.WriteString(s, "before\n")
	var got bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- s.Follow(t.Context(), &got, 0, nil) }()
	for i := range 1000 {
		fmt.Fprintf(s, "Hello Number %d\r\n", i)
	}
	s.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := "before\n"
	for i := range 1000 {
		want += fmt.Sprintf("Hello Number %d\r\n", i)
	}
	if got.String() != want {
		t.Errorf("follower got %d bytes, want %d", got.Len(), len(want))
	}
	if _, err := s.Write([]byte("late")); !errors.Is(err, ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
	// A reader attached after the end gets everything and returns.
	var again bytes.Buffer
	if err := s.Follow(t.Context(), &again, 0, nil); err != nil || again.String() != want {
		t.Errorf("late reader: %v, %d bytes", err, again.Len())
	}
	var tail bytes.Buffer
	if err := s.Follow(t.Context(), &tail, int64(len(want)-5), nil); err != nil || tail.String() != want[len(want)-5:] {
		t.Errorf("offset reader: %v, %q", err, tail.String())
	}
}

// A stalled reader never blocks the writer or the other readers, and the
// memory used does not grow with what is written.
func TestStalledReader(t *testing.T) {
	s := newStream(t)
	stalled := &blockingWriter{started: make(chan struct{}), release: make(chan struct{})}
	stalledDone := make(chan error, 1)
	io.WriteString(s, "first\n")
	go func() { stalledDone <- s.Follow(t.Context(), stalled, 0, nil) }()
	<-stalled.started

	var other bytes.Buffer
	otherDone := make(chan error, 1)
	go func() { otherDone <- s.Follow(t.Context(), &other, 0, nil) }()

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	const total = 64 << 20
	for n := 0; n < total; n += len(chunk) {
		if _, err := s.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	if err := <-otherDone; err != nil {
		t.Fatal(err)
	}
	if other.Len() != total+len("first\n") {
		t.Errorf("other reader got %d bytes", other.Len())
	}
	other = bytes.Buffer{}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 32<<20 {
		t.Errorf("heap grew by %d MiB writing 64 MiB past a stalled reader", grew>>20)
	}
	close(stalled.release)
	if err := <-stalledDone; err == nil {
		t.Error("stalled reader did not see its write error")
	}
}

func TestRemoveWhileReading(t *testing.T) {
	dir := t.TempDir()
	s, err := NewStream(dir)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(s, "all of it\n")
	r, w := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- s.Follow(t.Context(), w, 0, nil); w.Close() }()
	br := bufio.NewReader(r)
	line, _ := br.ReadString('\n') // the reader is attached and has read
	if err := s.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	rest, _ := io.ReadAll(br)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if line+string(rest) != "all of it\n" {
		t.Errorf("got %q", line+string(rest))
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
		t.Errorf("files left: %v", left)
	}
	if err := s.Follow(t.Context(), io.Discard, 0, nil); err == nil {
		t.Error("Follow on a removed stream succeeded")
	}
}

func TestFollowCancelled(t *testing.T) {
	s := newStream(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Follow(ctx, io.Discard, 0, nil) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("got %v", err)
	}
}

func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	if cfg.Address == "" {
		cfg.Address = "127.0.0.1"
	}
	srv, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

var tokenURL = regexp.MustCompile(`^http://localhost:[0-9]+/log/([a-zA-Z0-9_-]{22})$`)

func TestServer(t *testing.T) {
	srv := start(t, Config{})
	s := newStream(t)
	token := srv.Add(s)
	if u := srv.URL("localhost", token); !tokenURL.MatchString(u) {
		t.Errorf("URL %q", u)
	}
	if other := srv.Add(newStream(t)); other == token {
		t.Error("tokens repeat")
	}
	base := "http://127.0.0.1:" + strconv.Itoa(srv.Port())

	resp, err := http.Get(base + "/log/not-a-token")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown token: %d", resp.StatusCode)
	}

	io.WriteString(s, "line 1\n")
	resp, err = http.Get(base + "/log/" + token)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" || resp.StatusCode != 200 {
		t.Errorf("status %d, content type %q", resp.StatusCode, ct)
	}
	br := bufio.NewReader(resp.Body)
	// What was written before the reader came arrives without waiting for more.
	if line, err := br.ReadString('\n'); line != "line 1\n" || err != nil {
		t.Fatalf("first line %q, %v", line, err)
	}
	io.WriteString(s, "line 2\n")
	if line, err := br.ReadString('\n'); line != "line 2\n" || err != nil {
		t.Fatalf("followed line %q, %v", line, err)
	}
	s.Close()
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Errorf("after close: %q, %v", rest, err)
	}

	srv.Drop(token)
	resp, err = http.Get(base + "/log/" + token)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("dropped token: %d", resp.StatusCode)
	}
}

// Many readers at once, one of them stalled (its TCP window full), all
// while the writer keeps writing: the others get everything.
func TestServerManyReadersOneStalled(t *testing.T) {
	srv := start(t, Config{WriteTimeout: 2 * time.Second})
	s := newStream(t)
	token := srv.Add(s)
	url := "http://127.0.0.1:" + strconv.Itoa(srv.Port()) + "/log/" + token

	// The stalled reader sends a request and never reads the answer.
	stalled, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(srv.Port()))
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	fmt.Fprintf(stalled, "GET /log/%s HTTP/1.1\r\nHost: x\r\n\r\n", token)

	const readers = 8
	results := make(chan string, readers)
	for range readers {
		go func() {
			resp, err := http.Get(url)
			if err != nil {
				results <- err.Error()
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			results <- string(b)
		}()
	}
	var want strings.Builder
	line := strings.Repeat("y", 100) + "\r\n"
	for range 50000 { // ~5 MB, far beyond any socket buffer
		io.WriteString(s, line)
		want.WriteString(line)
	}
	s.Close()
	for range readers {
		select {
		case got := <-results:
			if got != want.String() {
				t.Errorf("reader got %d bytes, want %d", len(got), want.Len())
			}
		case <-time.After(time.Minute):
			t.Fatal("readers did not finish")
		}
	}
}

func TestPortRange(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	p := busy.Addr().(*net.TCPAddr).Port
	if p >= 65535-5 {
		t.Skip("ephemeral port at the top of the range")
	}
	srv, err := Start(Config{Address: "127.0.0.1", Port: p, PortRangeEnd: p + 5})
	if err != nil {
		t.Skipf("no free port next to %d: %v", p, err)
	}
	defer srv.Close()
	if got := srv.Port(); got <= p || got > p+5 {
		t.Errorf("port %d, want one in %d..%d", got, p+1, p+5)
	}
	if _, err := Start(Config{Address: "127.0.0.1", Port: p}); err == nil {
		t.Error("started on a busy port")
	}
}

func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "live.crt"), filepath.Join(dir, "live.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	srv := start(t, Config{CertFile: certFile, KeyFile: keyFile})
	if srv.Scheme() != "https" || !strings.HasPrefix(srv.URL("localhost", "x"), "https://localhost:") {
		t.Errorf("scheme %s, URL %s", srv.Scheme(), srv.URL("localhost", "x"))
	}
	s := newStream(t)
	token := srv.Add(s)
	io.WriteString(s, "secret log\n")
	s.Close()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get("https://localhost:" + strconv.Itoa(srv.Port()) + "/log/" + token)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); string(b) != "secret log\n" {
		t.Errorf("got %q", b)
	}

	if _, err := Start(Config{Address: "127.0.0.1", CertFile: filepath.Join(t.TempDir(), "missing.crt"), KeyFile: keyFile}); err == nil {
		t.Error("started with a missing certificate")
	}
}

// Close ends readers that are still following.
func TestCloseEndsReaders(t *testing.T) {
	srv, err := Start(Config{Address: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	s := newStream(t)
	token := srv.Add(s)
	io.WriteString(s, "x\n")
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(srv.Port()) + "/log/" + token)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	bufio.NewReader(resp.Body).ReadString('\n')
	done := make(chan struct{})
	go func() { io.ReadAll(resp.Body); close(done) }()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("reader still attached after Close")
	}
}

// A stream removed but still registered (the task just ended) answers 404,
// not an empty 200.
func TestRemovedStreamIsNotFound(t *testing.T) {
	srv := start(t, Config{})
	s, err := NewStream(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	token := srv.Add(s)
	io.WriteString(s, "gone\n")
	s.Remove()
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(srv.Port()) + "/log/" + token)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("status %d", resp.StatusCode)
	}
}
