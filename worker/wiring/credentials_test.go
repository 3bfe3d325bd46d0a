package wiring

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/localqueue"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// serveQueue serves an embedded queue on loopback with the given clients
// and returns its root URL; it stops with the test.
func serveQueue(t *testing.T, clients ...localqueue.Client) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rootURL := "http://" + ln.Addr().String()
	q, err := localqueue.New(localqueue.Config{RootURL: rootURL, DataDir: t.TempDir(), Clients: clients, ClaimWait: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- localqueue.Serve(ctx, ln, q) }()
	t.Cleanup(func() { cancel(); <-done })
	return rootURL
}

// Set reaches every client that signs with the worker's credentials: the
// claim loop's queue and the features' auth calls. The old client may not
// claim nor expand scopes; once the new credentials are set, both work.
func TestWorkerCredentialsSet(t *testing.T) {
	rootURL := serveQueue(t,
		localqueue.Client{ClientID: "old", AccessToken: "old-token", Scopes: []string{"queue:status:*"}},
		localqueue.Client{ClientID: "new", AccessToken: "new-token", Scopes: []string{
			"queue:claim-work:null-provisioner/creds", "queue:worker-id:grp/w1", "auth:expand-scopes"}},
	)
	cfg := config.Default()
	cfg.RootURL = rootURL
	cfg.Taskcluster = config.Credentials{ClientID: "old", AccessToken: "old-token"}
	creds := NewWorkerCredentials(cfg)
	calls := taskclusterCalls{worker: creds, anonymous: tc.New(tc.Config{RootURL: "http://127.0.0.1:1"})}
	claim := func() error {
		_, err := creds.ClaimWork(t.Context(), "null-provisioner/creds", tc.ClaimWorkRequest{WorkerGroup: "grp", WorkerID: "w1", Tasks: 1})
		return err
	}
	if err := claim(); tc.StatusCode(err) != http.StatusForbidden {
		t.Fatalf("claimWork with the old credentials: %v, want 403", err)
	}
	if _, err := calls.worker.Client().ExpandScopes(t.Context(), []string{"queue:status:*"}); tc.StatusCode(err) != http.StatusForbidden {
		t.Fatalf("expandScopes with the old credentials: %v, want 403", err)
	}
	creds.Set(tc.Credentials{ClientID: "new", AccessToken: "new-token"})
	if err := claim(); err != nil {
		t.Errorf("claimWork with the new credentials: %v", err)
	}
	if got := creds.Client(); got == nil || got.RootURL() != rootURL {
		t.Errorf("client after Set: %v", got)
	}
	if _, err := calls.worker.Client().ExpandScopes(t.Context(), []string{"queue:status:*"}); err != nil {
		t.Errorf("expandScopes with the new credentials: %v", err)
	}
}
