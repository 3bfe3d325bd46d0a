package e2e

import (
	"context"
	"net"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/coder/websocket"

	"go.dockerworker.dev/docker-worker/worker/tc"
)

// interactive.port, portRangeEnd and bindAddress place the shell server:
// the shell URL names a port of the range, and a session works there.
func TestInteractivePortAndBindAddress(t *testing.T) {
	q := startQueue(t, anonymousShell)
	cfg := interactiveConfig(q, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	first := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfg.Interactive.Port, cfg.Interactive.PortRangeEnd, cfg.Interactive.BindAddress = first, first+10, "127.0.0.1"
	startFullWorker(t, q, cfg)
	taskID := q.create(t, newTask(cfg, interactivePayload("echo started")))
	socket := shellURL(t, q, taskID).Query().Get("socketUrl")
	u, err := url.Parse(socket)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := strconv.Atoi(u.Port()); p < first || p > first+10 {
		t.Errorf("socketUrl %s: port outside interactive.port..portRangeEnd (%d-%d)", socket, first, first+10)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	// The server listens on 127.0.0.1 (the URL's host is the worker's
	// host name, localhost here).
	u.Host = net.JoinHostPort("127.0.0.1", u.Port())
	conn, err := catSession(ctx, t, u.String())
	if err != nil {
		t.Fatalf("cat session at %s: %v", u, err)
	}
	conn.Close(websocket.StatusNormalClosure, "")
	wantState(t, q.waitRun(t, taskID, 0, time.Minute), 0, tc.StateCompleted, "completed")
}
