package tc

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPurgeCacheCalls(t *testing.T) {
	var (
		mu    sync.Mutex
		calls []string
	)
	srv := fakeService(t, testVerifier(), func(w http.ResponseWriter, r *http.Request, _ *hawkResult) {
		mu.Lock()
		calls = append(calls, r.Method+" "+r.RequestURI)
		mu.Unlock()
		switch {
		case r.Method == http.MethodPost:
			if got := string(readBody(t, r)); got != `{"cacheName":"level-3-checkouts"}` {
				t.Errorf("purgeCache body = %s", got)
			}
			w.WriteHeader(http.StatusNoContent)
		case r.URL.Path == "/api/purge-cache/v1/purge-cache/list":
			w.Write([]byte(`{"requests":[{"provisionerId":"p","workerType":"w","cacheName":"c","before":"2027-01-02T03:04:05.678Z"}],"continuationToken":"more"}`))
		default:
			w.Write([]byte(`{"requests":[{"provisionerId":"p","workerType":"w","cacheName":"c","before":"2027-01-02T03:04:05.678Z"}]}`))
		}
	})
	c := testClient(srv, -1)
	ctx := t.Context()
	if err := c.PurgeCache(ctx, "p/w", "level-3-checkouts"); err != nil {
		t.Fatal(err)
	}
	want := []PurgeRequest{{WorkerPoolID: "p/w", CacheName: "c", Before: time.Date(2027, 1, 2, 3, 4, 5, 678e6, time.UTC)}}
	for _, since := range []time.Time{{}, time.Date(2027, 1, 1, 1, 0, 0, 0, time.FixedZone("x", 3600))} {
		got, err := c.PurgeRequests(ctx, "p/w", since)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("PurgeRequests (-want +got):\n%s", diff)
		}
	}
	got, token, err := c.AllPurgeRequests(ctx, "", 5)
	if err != nil || token != "more" {
		t.Fatalf("AllPurgeRequests: token %q, %v", token, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("AllPurgeRequests (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{
		"POST /api/purge-cache/v1/purge-cache/p%2Fw",
		"GET /api/purge-cache/v1/purge-cache/p%2Fw",
		"GET /api/purge-cache/v1/purge-cache/p%2Fw?since=2027-01-01T00%3A00%3A00.000Z",
		"GET /api/purge-cache/v1/purge-cache/list?limit=5",
	}, calls); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}
