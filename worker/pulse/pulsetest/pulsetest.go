// Package pulsetest gives tests the RabbitMQ broker test/setup-env.sh
// starts, and a loopback TCP proxy in front of it whose connections a test
// can cut (as a broker restart or a network failure would), stall (as a
// dead NAT entry or a frozen broker would: no bytes, no FIN) or refuse.
// For tests only.
package pulsetest

import (
	"io"
	"net"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"
)

// DefaultURL is the broker test/setup-env.sh starts; DW_TEST_AMQP_URL
// overrides it.
const DefaultURL = "amqp://guest:guest@127.0.0.1:5672/"

// Require returns the test broker's URL. Without a broker the test is
// skipped, unless CI is set: then it fails.
func Require(t testing.TB) string {
	t.Helper()
	u := DefaultURL
	if v := os.Getenv("DW_TEST_AMQP_URL"); v != "" {
		u = v
	}
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatalf("broker URL: %v", err)
	}
	c, err := net.DialTimeout("tcp", pu.Host, 2*time.Second)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("RabbitMQ at %s does not answer (CI is set; test/setup-env.sh starts it): %v", pu.Host, err)
		}
		t.Skipf("RabbitMQ at %s does not answer (run test/setup-env.sh): %v", pu.Host, err)
	}
	c.Close()
	return u
}

// Proxy forwards loopback TCP connections to a broker.
type Proxy struct {
	// URL is the broker URL through the proxy.
	URL string

	mu       sync.Mutex
	conns    []net.Conn
	refusing bool
	// stalled is closed by Stall to stop the connections open at the time;
	// each connection keeps the channel that was current when it opened.
	stalled chan struct{}
}

// NewProxy starts a proxy to brokerURL's host, stopped when the test ends.
func NewProxy(t testing.TB, brokerURL string) *Proxy {
	t.Helper()
	u, err := url.Parse(brokerURL)
	if err != nil {
		t.Fatal(err)
	}
	target := u.Host
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.Host = l.Addr().String()
	p := &Proxy{URL: u.String(), stalled: make(chan struct{})}
	t.Cleanup(func() { l.Close(); p.Cut() })
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			refusing := p.refusing
			p.mu.Unlock()
			if refusing {
				in.Close()
				continue
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			stalled := p.stalled
			p.mu.Unlock()
			go func() { pipe(out, in, stalled) }()
			go func() { pipe(in, out, stalled) }()
		}
	}()
	return p
}

// pipe copies from src to dst until either fails, then closes dst. Once
// stalled is closed it stops forwarding and leaves dst open, so the far
// side learns nothing (not even that src closed) until the connection is
// cut or the test ends.
func pipe(dst, src net.Conn, stalled <-chan struct{}) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-stalled:
			_, _ = io.Copy(io.Discard, src)
			return
		default:
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				dst.Close()
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

// Stall makes the connections open now stop passing bytes either way
// without closing them; connections opened later are not affected.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	close(p.stalled)
	p.stalled = make(chan struct{})
}

// SetRefusing makes the proxy close new connections at once (or not).
func (p *Proxy) SetRefusing(v bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refusing = v
}

// Cut closes every open connection.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
