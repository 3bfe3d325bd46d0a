package interactive

import (
	"net"
	"strconv"
	"strings"
	"testing"
)

// busyPort holds a port on 127.0.0.1 for the test's duration.
func busyPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// With a port range, the server takes the first free port of it and the
// shell URL names that port; with every port of the range taken it does
// not start.
func TestServerPortRange(t *testing.T) {
	busy := busyPort(t)
	srv, err := StartServer(ServerConfig{Address: "127.0.0.1", Port: busy, PortRangeEnd: busy + 20})
	if err != nil {
		t.Fatalf("StartServer: %v", err)
	}
	defer srv.Close()
	if p := srv.Port(); p <= busy || p > busy+20 {
		t.Errorf("port %d, want one in %d-%d after the busy %d", p, busy+1, busy+20, busy)
	}
	if u := srv.URL("worker.example.com", "tok"); u != "ws://worker.example.com:"+strconv.Itoa(srv.Port())+"/tok"+SocketPath {
		t.Errorf("URL %q", u)
	}
	if _, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(srv.Port())); err != nil {
		t.Errorf("nothing listens on the server's port: %v", err)
	}

	if srv, err := StartServer(ServerConfig{Address: "127.0.0.1", Port: busy, PortRangeEnd: busy}); err == nil {
		srv.Close()
		t.Fatal("started on a range whose only port is taken")
	} else if !strings.Contains(err.Error(), "no free port") {
		t.Errorf("error %q, want one saying no port was free", err)
	}
}

// The server listens on the bind address only, at the port asked for.
func TestServerBindAddressAndPort(t *testing.T) {
	// A port that was free a moment ago; nothing else on this loopback
	// address is expected to take it in between.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	srv, err := StartServer(ServerConfig{Address: "127.0.0.1", Port: port})
	if err != nil {
		t.Fatalf("StartServer: %v", err)
	}
	defer srv.Close()
	if got := srv.ln.Addr().String(); got != "127.0.0.1:"+strconv.Itoa(port) {
		t.Errorf("listening on %s, want 127.0.0.1:%d", got, port)
	}
}
