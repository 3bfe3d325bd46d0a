package localqueue

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/tc"
)

// TestPurgeCacheConformance drives every route of the purge-cache service
// with the tc client, every exchange checked against the reference.
func TestPurgeCacheConformance(t *testing.T) {
	c := newConfEnv(t)
	ctx := t.Context()
	anon := tc.New(tc.Config{RootURL: c.root, HTTPClient: &http.Client{Transport: c.rec}, Retries: -1})
	const pool = "prov/type-a"

	if err := c.admin.Request(ctx, servicePurgeCache, "GET", "/ping", nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	if reqs, err := anon.PurgeRequests(ctx, pool, time.Time{}); err != nil || len(reqs) != 0 {
		t.Fatalf("purgeRequests of a pool without requests = %+v, %v", reqs, err)
	}
	first := c.now().UTC().Truncate(time.Millisecond)
	for _, name := range []string{"level-3-checkouts", "tooltool"} {
		if err := c.admin.PurgeCache(ctx, pool, name); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.admin.PurgeCache(ctx, "prov/type-b", "tooltool"); err != nil {
		t.Fatal(err)
	}
	err := c.nobody.PurgeCache(ctx, pool, "x")
	wantCode(t, "purgeCache without scopes", err, codeInsufficientScopes)
	err = anon.PurgeCache(ctx, pool, "x")
	wantCode(t, "anonymous purgeCache", err, codeInsufficientScopes)

	reqs, err := anon.PurgeRequests(ctx, pool, time.Time{}) // anonymous may read
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range reqs {
		if r.WorkerPoolID != pool || r.Before.Before(first) || r.Before.After(c.now()) {
			t.Errorf("request %+v", r)
		}
		names = append(names, r.CacheName)
	}
	if want := []string{"level-3-checkouts", "tooltool"}; !slices.Equal(names, want) {
		t.Errorf("requests of %s = %v, want %v", pool, names, want)
	}

	// Asking again moves `before`; since filters on it.
	c.advance(time.Minute)
	later := c.now().UTC().Truncate(time.Millisecond)
	if err := c.admin.PurgeCache(ctx, pool, "tooltool"); err != nil {
		t.Fatal(err)
	}
	reqs, err = c.admin.PurgeRequests(ctx, pool, later)
	if err != nil || len(reqs) != 1 || reqs[0].CacheName != "tooltool" || reqs[0].Before.Before(later) {
		t.Fatalf("purgeRequests since %s = %+v, %v", later, reqs, err)
	}
	_, err = c.nobody.PurgeRequests(ctx, pool, time.Time{})
	wantCode(t, "purgeRequests without scopes", err, codeInsufficientScopes)

	// allPurgeRequests, page by page, ordered by pool then name.
	var all []string
	for token := ""; ; {
		page, next, err := anon.AllPurgeRequests(ctx, token, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page {
			all = append(all, r.WorkerPoolID+":"+r.CacheName)
		}
		if token = next; token == "" {
			break
		}
	}
	if want := []string{pool + ":level-3-checkouts", pool + ":tooltool", "prov/type-b:tooltool"}; !slices.Equal(all, want) {
		t.Errorf("allPurgeRequests = %v, want %v", all, want)
	}
	_, _, err = c.nobody.AllPurgeRequests(ctx, "", 0)
	wantCode(t, "allPurgeRequests without scopes", err, codeInsufficientScopes)

	// A request lasts a day.
	c.advance(purgeRequestLifetime - 30*time.Second)
	if reqs, err := c.admin.PurgeRequests(ctx, pool, time.Time{}); err != nil || len(reqs) != 1 || reqs[0].CacheName != "tooltool" {
		t.Fatalf("purgeRequests a day later = %+v, %v (want the renewed tooltool only)", reqs, err)
	}
	if page, _, err := c.admin.AllPurgeRequests(ctx, "", 0); err != nil || len(page) != 1 {
		t.Fatalf("allPurgeRequests a day later = %+v, %v", page, err)
	}

	c.checkExercised(servicePurgeCache)
}

// Raw HTTP: requests the purge-cache service refuses.
func TestPurgeCacheErrors(t *testing.T) {
	c := newConfEnv(t, func(c *Config) {
		c.Clients = append(c.Clients, Client{ClientID: "limited", AccessToken: "limited-secret", Scopes: []string{"purge-cache:p/w:mine"}})
	})
	limited := &tc.Credentials{ClientID: "limited", AccessToken: "limited-secret"}
	for _, tt := range []struct {
		name, method, path string
		creds              *tc.Credentials
		body               any
		code               string
	}{
		{"purgeCache: not JSON", "POST", "/purge-cache/p%2Fw", &adminCreds, []byte("{"), codeMalformedPayload},
		{"purgeCache: no cacheName", "POST", "/purge-cache/p%2Fw", &adminCreds, map[string]any{}, codeInputValidationError},
		{"purgeCache: cacheName not a string", "POST", "/purge-cache/p%2Fw", &adminCreds, map[string]any{"cacheName": 1}, codeInputValidationError},
		{"purgeCache: bad workerPoolId", "POST", "/purge-cache/nope", &adminCreds, map[string]any{"cacheName": "x"}, codeInvalidRequestArguments},
		{"purgeCache: another cache", "POST", "/purge-cache/p%2Fw", limited, map[string]any{"cacheName": "other"}, codeInsufficientScopes},
		{"purgeCache: another pool", "POST", "/purge-cache/p%2Fv", limited, map[string]any{"cacheName": "mine"}, codeInsufficientScopes},
		{"purgeRequests: bad since", "GET", "/purge-cache/p%2Fw?since=yesterday", nil, nil, codeInvalidRequestArguments},
		{"purgeRequests: bad workerPoolId", "GET", "/purge-cache/a%2Fb%2Fc", nil, nil, codeInvalidRequestArguments},
		{"purgeRequests: no scopes", "GET", "/purge-cache/p%2Fw", &nobodyCreds, nil, codeInsufficientScopes},
		{"allPurgeRequests: bad limit", "GET", "/purge-cache/list?limit=0", nil, nil, codeInvalidRequestArguments},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			var body []byte
			if raw, ok := tt.body.([]byte); ok {
				body = raw
			} else if tt.body != nil {
				body, _ = json.Marshal(tt.body)
			}
			resp, b := c.requestURL(tt.method, c.root+"/api/purge-cache/v1"+tt.path, tt.creds, body, nil)
			if resp.StatusCode != codeStatus[tt.code] {
				t.Fatalf("%s %s = %d %s, want %d", tt.method, tt.path, resp.StatusCode, b, codeStatus[tt.code])
			}
			if eb := checkErrorBody(t, b, tt.code); eb.RequestInfo.Method == "" {
				t.Error("requestInfo.method is empty")
			}
		})
	}
	c.t = t
	// The scope names the pool and the cache; the pool may arrive unescaped.
	resp, b := c.requestURL("POST", c.root+"/api/purge-cache/v1/purge-cache/p/w", limited, []byte(`{"cacheName":"mine"}`), nil)
	if resp.StatusCode != http.StatusNoContent || len(b) != 0 {
		t.Fatalf("purgeCache with purge-cache:p/w:mine = %d %s, want 204", resp.StatusCode, b)
	}
}

// Purge requests live in the durable store.
func TestPurgeRequestsSurviveRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	dataDir := t.TempDir()
	open := func() *env {
		store, err := OpenBoltStore(path)
		if err != nil {
			t.Fatal(err)
		}
		e := newEnv(t, func(c *Config) { c.Store = store; c.DataDir = dataDir })
		t.Cleanup(func() { e.q.Close() })
		return e
	}
	e := open()
	resp, b := e.requestURL("POST", e.root+"/api/purge-cache/v1/purge-cache/p%2Fw", &adminCreds, []byte(`{"cacheName":"c"}`), nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("purgeCache = %d %s", resp.StatusCode, b)
	}
	e.srv.Close()
	e.q.Close()

	e = open()
	var got struct{ Requests []purgeRequestJSON }
	e.callService(servicePurgeCache, "GET", "/purge-cache/p%2Fw", "purge-cache/v1/purge-cache-request-list.json", &got)
	if len(got.Requests) != 1 || got.Requests[0] != (purgeRequestJSON{ProvisionerID: "p", WorkerType: "w", CacheName: "c", Before: got.Requests[0].Before}) {
		t.Fatalf("after restart: %+v", got)
	}
}
