package localqueue

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/tc"
)

// A signed request captured before a restart is refused after it (same
// 401 as before the restart), as long as its timestamp is within the
// clock-skew window: the queue keeps the nonces it saw in its durable
// store. A fresh request is accepted. Nonces past the window are dropped
// from the store at the next start.
func TestNonceReplayRefusedAfterRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	dataDir := t.TempDir()
	open := func(mod func(*Config)) *Queue {
		store, err := OpenBoltStore(path)
		if err != nil {
			t.Fatal(err)
		}
		cfg := Config{
			RootURL:           "http://127.0.0.1:1",
			DataDir:           dataDir,
			Clients:           []Client{{ClientID: adminCreds.ClientID, AccessToken: adminCreds.AccessToken, Scopes: []string{"*"}}},
			IssuerAccessToken: testIssuerToken,
			Store:             store,
			Logger:            testLogger(t),
		}
		if mod != nil {
			mod(&cfg)
		}
		q, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	// The captured request: the exact bytes of the Authorization header
	// and the Host it was signed for, sent to whatever address the
	// restarted queue listens on.
	const host = "queue.example:8080"
	target, _ := url.Parse("http://" + host + "/api/queue/v1/task/" + "fKpzKdFKQxu0-ZoWtvFdHQ" + "/status")
	capture := func(at time.Time) string {
		h, err := tc.SignRequest(adminCreds, "GET", target, at)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	// A createTask, whose nonce is stored with the task it creates.
	create, _ := url.Parse("http://" + host + "/api/queue/v1/task/" + "Zb1MZ0CWQb6uUx2W3kXyCg")
	now := time.Now().UTC()
	createBody := fmt.Appendf(nil, `{"taskQueueId": %q, "created": %q, "deadline": %q, "payload": {},
		"metadata": {"name": "n", "description": "d", "owner": "o@example.com", "source": "https://example.com"}}`,
		testQueueID, now.Format(time.RFC3339), now.Add(time.Hour).Format(time.RFC3339))
	createAuth, err := tc.SignRequest(adminCreds, "PUT", create, now)
	if err != nil {
		t.Fatal(err)
	}
	put := func(q *Queue) (int, string) {
		srv := httptest.NewServer(q.Handler())
		defer srv.Close()
		req, _ := http.NewRequest("PUT", srv.URL+create.RequestURI(), bytes.NewReader(createBody))
		req.Host = host
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", createAuth)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var eb struct{ Message string }
		_ = json.NewDecoder(resp.Body).Decode(&eb)
		return resp.StatusCode, eb.Message
	}
	send := func(q *Queue, auth string) (int, string) {
		srv := httptest.NewServer(q.Handler())
		defer srv.Close()
		req, _ := http.NewRequest("GET", srv.URL+target.RequestURI(), nil)
		req.Host = host
		req.Header.Set("Authorization", auth)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var eb struct{ Message string }
		_ = json.NewDecoder(resp.Body).Decode(&eb)
		return resp.StatusCode, eb.Message
	}
	// The task does not exist: 404 means authenticated, 401 not.
	captured := capture(time.Now())
	q := open(nil)
	if code, msg := send(q, captured); code != http.StatusNotFound {
		t.Fatalf("first use = %d %s, want 404 (authenticated, no such task)", code, msg)
	}
	code, before := send(q, captured)
	if code != http.StatusUnauthorized {
		t.Fatalf("replay before the restart = %d %s, want 401", code, before)
	}
	if code, msg := put(q); code != http.StatusOK {
		t.Fatalf("createTask = %d %s", code, msg)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	q = open(nil)
	code, after := send(q, captured)
	if code != http.StatusUnauthorized || after != before {
		t.Errorf("replay after the restart = %d %q, want 401 %q", code, after, before)
	}
	if code, msg := send(q, capture(time.Now())); code != http.StatusNotFound {
		t.Errorf("fresh request after the restart = %d %s, want 404", code, msg)
	}
	if code, msg := put(q); code != http.StatusUnauthorized {
		t.Errorf("createTask replayed after the restart = %d %s, want 401", code, msg)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	// 16 minutes on, the captured request is stale anyway, and the store
	// forgets its nonces.
	later := time.Now().Add(maxClockSkew + time.Minute)
	q = open(func(c *Config) { c.Now = func() time.Time { return later } })
	defer q.Close()
	if n, err := q.store.Nonces(t.Context(), later); err != nil || len(n) != 0 {
		t.Errorf("nonces kept past the window: %d, %v", len(n), err)
	}
	if code, msg := send(q, capture(later)); code != http.StatusNotFound {
		t.Errorf("fresh request 16 minutes on = %d %s, want 404", code, msg)
	}
}

// The nonce cache refuses a duplicate, refuses new nonces once it holds
// maxNonces (instead of forgetting one early), and sweeps expired entries
// out of memory and the store. A reserved nonce reaches the store once,
// with a commit or on its own.
func TestNonceCacheBoundedAndSwept(t *testing.T) {
	store := NewMemStore()
	now := time.Now()
	var c nonceCache
	if err := c.load(t.Context(), store, testLogger(t), now); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	use := func(key string, at time.Time) (bool, error) {
		n, err := c.reserve(ctx, key, at.Add(time.Minute), at)
		if n == nil || err != nil {
			return false, err
		}
		return true, n.store(ctx)
	}
	if fresh, err := use("a", now); !fresh || err != nil {
		t.Fatalf("first use = %v, %v", fresh, err)
	}
	if fresh, err := use("a", now); fresh || err != nil {
		t.Fatalf("second use = %v, %v; want refused without error", fresh, err)
	}
	c.mu.Lock()
	for i := len(c.seen); i < maxNonces; i++ {
		c.seen["filler-"+strconv.Itoa(i)] = now.Add(time.Minute)
	}
	c.mu.Unlock()
	if fresh, err := use("b", now); fresh || err != errTooManyNonces {
		t.Fatalf("use when full = %v, %v; want errTooManyNonces", fresh, err)
	}
	// Two minutes on, everything has expired and is swept.
	later := now.Add(2 * time.Minute)
	if fresh, err := use("b", later); !fresh || err != nil {
		t.Fatalf("use after the sweep = %v, %v", fresh, err)
	}
	c.mu.Lock()
	n := len(c.seen)
	c.mu.Unlock()
	if n != 1 {
		t.Errorf("entries after the sweep = %d, want 1", n)
	}
	kept, err := store.Nonces(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := kept["a"]; ok || len(kept) != 1 {
		t.Errorf("store after the sweep = %v, want only b", kept)
	}

	// With a commit: the first commit carries the nonce, later ones and
	// store do not write it again.
	p, err := c.reserve(ctx, "c", later.Add(time.Minute), later)
	if err != nil || p == nil {
		t.Fatalf("reserve = %v, %v", p, err)
	}
	var carried []*NonceRecord
	for range 2 {
		if err := p.withCommit(func(n *NonceRecord) error { carried = append(carried, n); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if len(carried) != 2 || carried[0] == nil || carried[0].Key != "c" || carried[1] != nil {
		t.Errorf("commits carried %v, want the nonce with the first only", carried)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.store(ctx); err != nil {
		t.Errorf("store after a commit carried the nonce = %v, want nil without touching the store", err)
	}
}
