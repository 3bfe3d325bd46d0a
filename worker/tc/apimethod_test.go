package tc

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

func TestAPIMethod(t *testing.T) {
	for _, c := range []struct{ service, method, path, want string }{
		{queueService, http.MethodPost, "/claim-work/proj%2Fci", "claimWork"},
		{queueService, http.MethodPost, "/task/T/runs/0/reclaim", "reclaimTask"},
		{queueService, http.MethodPost, "/task/T/runs/0/completed", "reportCompleted"},
		{queueService, http.MethodPost, "/task/T/runs/1/exception", "reportException"},
		{queueService, http.MethodPost, "/task/T/runs/0/artifacts/public%2Flogs%2Flive.log", "createArtifact"},
		{queueService, http.MethodPut, "/task/T/runs/0/artifacts/public%2Fx", "finishArtifact"},
		{queueService, http.MethodGet, "/task/T", "task"},
		{queueService, http.MethodGet, "/task/T/status", "status"},
		{indexService, http.MethodGet, "/task/a.b.c", "findTask"},
		{objectService, http.MethodPut, "/upload/n", "createUpload"},
		{purgeCacheService, http.MethodGet, "/purge-cache/list", "allPurgeRequests"},
		{purgeCacheService, http.MethodGet, "/purge-cache/proj%2Fci", "purgeRequests"},
		{authService, http.MethodPost, "/scopes/expand", "expandScopes"},
		// Unknown calls are named without their IDs.
		{queueService, http.MethodGet, "/provisioners/p/worker-types/w", "GET /provisioners"},
	} {
		if got := APIMethod(c.service, c.method, c.path); got != c.want {
			t.Errorf("APIMethod(%s, %s, %s) = %q, want %q", c.service, c.method, c.path, got, c.want)
		}
	}
}

// OnFailure hears of each call that failed for good, once (not of each
// retry), through clients made by WithCredentials too, and not of calls
// the caller cancelled.
func TestOnFailure(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/queue/v1/task/T/status" {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusConflict)
		w.Write([]byte(`{"code":"RequestConflict","message":"no"}`))
	}))
	defer srv.Close()
	var mu sync.Mutex
	var got []FailedCall
	c := New(Config{RootURL: srv.URL, Retries: 2, BaseDelay: 1, MaxDelay: 1, OnFailure: func(fc FailedCall) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, fc)
	}})
	ctx := context.Background()
	if _, err := c.WithCredentials(Credentials{ClientID: "c", AccessToken: "t"}).ReclaimTask(ctx, "T", 0); err == nil {
		t.Fatal("reclaim succeeded")
	}
	if _, err := c.Status(ctx, "T"); err == nil {
		t.Fatal("status succeeded")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Status(cancelled, "T"); err == nil {
		t.Fatal("cancelled status succeeded")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("failures %+v, want 2", got)
	}
	if got[0].Service != "queue" || got[0].Method != "reclaimTask" || got[0].Status != http.StatusConflict || got[0].Err == nil {
		t.Errorf("first %+v", got[0])
	}
	var ae *APIError
	if got[1].Method != "status" || got[1].Status != http.StatusBadGateway || !errors.As(got[1].Err, &ae) {
		t.Errorf("second %+v", got[1])
	}
}
