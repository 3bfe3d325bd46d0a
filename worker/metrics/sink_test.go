package metrics

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// influxURL is the shared test InfluxDB (test/setup-env.sh starts it);
// the test fails when CI is set and it does not answer, and skips
// otherwise.
func influxURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("DW_TEST_INFLUX")
	if u == "" {
		u = "http://127.0.0.1:8086"
	}
	resp, err := http.Get(u + "/ping")
	if err == nil {
		resp.Body.Close()
	}
	if err != nil || resp.StatusCode != http.StatusNoContent {
		if os.Getenv("CI") != "" {
			t.Fatalf("InfluxDB at %s does not answer (run test/setup-env.sh): %v", u, err)
		}
		t.Skipf("InfluxDB at %s does not answer (run test/setup-env.sh): %v", u, err)
	}
	return u
}

// influxQL runs q against the server and returns the rows of its first
// series as maps from column to value.
func influxQL(t *testing.T, base, db, q string) []map[string]any {
	t.Helper()
	resp, err := http.PostForm(base+"/query", url.Values{"db": {db}, "q": {q}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Results []struct {
			Error  string
			Series []struct {
				Columns []string
				Values  [][]any
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	var rows []map[string]any
	for _, r := range body.Results {
		if r.Error != "" {
			t.Fatalf("%s: %s", q, r.Error)
		}
		for _, s := range r.Series {
			for _, v := range s.Values {
				row := map[string]any{}
				for i, c := range s.Columns {
					row[c] = v[i]
				}
				rows = append(rows, row)
			}
		}
	}
	return rows
}

// tempDatabase creates a database for the test and drops it afterwards.
func tempDatabase(t *testing.T, base string) string {
	t.Helper()
	db := fmt.Sprintf("dwtest_%d", time.Now().UnixNano())
	influxQL(t, base, "", "CREATE DATABASE "+db)
	t.Cleanup(func() { influxQL(t, base, "", "DROP DATABASE "+db) })
	return db
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSinkWritesToInfluxDB(t *testing.T) {
	base := influxURL(t)
	db := tempDatabase(t, base)
	s, err := New(Config{
		URL: base, Database: db, RetentionPolicy: "autogen",
		Tags:          map[string]string{"workerType": "wt", "region": "r1", "instanceType": ""},
		BatchSize:     3,
		FlushInterval: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	runs := NewRuns(s)
	runs.Claimed("T1", 0, t0)
	runs.Phase("T1", 0, "image", t0.Add(100*time.Millisecond))
	runs.Phase("T1", 0, "created", t0.Add(250*time.Millisecond))
	runs.FirstOutput("T1", 0, t0.Add(300*time.Millisecond))
	runs.Phase("T1", 0, "resolved", t0.Add(900*time.Millisecond))
	runs.Resolved("T1", 0, "exception", "malformed-payload", t0.Add(1000*time.Millisecond))
	Capacity(s, 1, 4, t0)
	ClaimError(s, 503, "queue unavailable", t0)
	ClaimError(s, 0, "connection refused", t0.Add(time.Millisecond))
	Recovery(s, 2, 1, 0, 0, 1500*time.Millisecond, t0)
	if runs.Open() != 0 {
		t.Errorf("%d runs still followed after resolution", runs.Open())
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s.Written() != 5 || s.Dropped() != 0 {
		t.Fatalf("written %d, dropped %d; want 5 and 0", s.Written(), s.Dropped())
	}

	task := influxQL(t, base, db, `SELECT * FROM "task"`)
	if len(task) != 1 {
		t.Fatalf("task points: %v", task)
	}
	want := map[string]any{
		"workerType": "wt", "region": "r1", "instanceType": nil, "resolution": "exception", "reason": "malformed-payload",
		"taskId": "T1", "runId": 0.0, "imageMs": 100.0, "imageAtMs": 100.0, "createdMs": 150.0, "createdAtMs": 250.0,
		"firstOutputAtMs": 300.0, "resolvedMs": 750.0, "resolvedAtMs": 1000.0, "totalMs": 1000.0,
	}
	for k, v := range want {
		if task[0][k] != v {
			t.Errorf("task %s = %v (%T), want %v", k, task[0][k], task[0][k], v)
		}
	}
	if c := influxQL(t, base, db, `SELECT running, total, idle FROM "capacity" WHERE "workerType" = 'wt'`); len(c) != 1 ||
		c[0]["running"] != 1.0 || c[0]["total"] != 4.0 || c[0]["idle"] != 3.0 {
		t.Errorf("capacity points: %v", c)
	}
	ce := influxQL(t, base, db, `SELECT sum("count") FROM "claim_error" GROUP BY "code"`)
	if len(ce) != 2 {
		t.Errorf("claim_error sums by code: %v", ce)
	}
	if r := influxQL(t, base, db, `SELECT containersRemoved, ms FROM "recovery"`); len(r) != 1 || r[0]["containersRemoved"] != 2.0 || r[0]["ms"] != 1500.0 {
		t.Errorf("recovery points: %v", r)
	}
}

// stallServer answers /api/v2/write only when released, counting requests.
type stallServer struct {
	*httptest.Server
	release  chan struct{}
	requests atomic.Int64
}

func newStallServer(t *testing.T) *stallServer {
	s := &stallServer{release: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Reading the body lets the server notice a client that gives up.
		io.Copy(io.Discard, r.Body)
		s.requests.Add(1)
		select {
		case <-s.release:
		case <-r.Context().Done():
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(s.Close)
	t.Cleanup(func() {
		select {
		case <-s.release:
		default:
			close(s.release)
		}
	})
	return s
}

// lockedBuffer is a log destination the sink's goroutine writes to.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestSinkNeverBlocksAndCountsDrops(t *testing.T) {
	srv := newStallServer(t)
	var logs lockedBuffer
	s, err := New(Config{
		URL: srv.URL, Database: "d", BatchSize: 2, BufferSize: 4,
		FlushInterval: 10 * time.Millisecond, WriteTimeout: time.Hour, ReportInterval: time.Hour,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	// The first batch of two hangs in a write; the buffer then holds four.
	s.Add("m", nil, map[string]any{"v": 1}, time.Now())
	s.Add("m", nil, map[string]any{"v": 2}, time.Now())
	waitFor(t, "the first write", func() bool { return srv.requests.Load() == 1 })
	const n = 100
	for i := range n {
		s.Add("m", nil, map[string]any{"v": i}, time.Now())
	}
	if got := s.Dropped(); got != n-4 {
		t.Errorf("dropped %d points while the server hangs, want %d", got, n-4)
	}
	close(srv.release)
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s.Written() != 6 || s.Dropped() != n-4 {
		t.Errorf("written %d, dropped %d; want 6 and %d", s.Written(), s.Dropped(), n-4)
	}
	if out := logs.String(); strings.Count(out, "metrics: InfluxDB writes failing") != 1 || !strings.Contains(out, "droppedTotal=96") {
		t.Errorf("want one report of the drops; log:\n%s", out)
	}
}

func TestSinkRetriesAndDropsRefusedBatches(t *testing.T) {
	var mu sync.Mutex
	answers := []int{http.StatusServiceUnavailable, http.StatusServiceUnavailable, http.StatusNoContent, http.StatusBadRequest, http.StatusNoContent}
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		code := http.StatusNoContent
		if len(answers) > 0 {
			code, answers = answers[0], answers[1:]
		}
		bodies = append(bodies, string(b))
		mu.Unlock()
		if r.URL.Path != "/api/v2/write" || r.URL.Query().Get("bucket") != "d/rp" || r.Header.Get("Authorization") != "Token u:s3cret" {
			t.Errorf("write to %s?%s with %q", r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"))
		}
		if code != http.StatusNoContent {
			http.Error(w, `{"code":"x","message":"no"}`, code)
			return
		}
		w.WriteHeader(code)
	}))
	defer srv.Close()
	var logs lockedBuffer
	s, err := New(Config{
		URL: srv.URL, Database: "d", RetentionPolicy: "rp", Username: "u", Password: "s3cret",
		BatchSize: 1, FlushInterval: 10 * time.Millisecond, ReportInterval: time.Hour,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Add("m", map[string]string{"k": "a"}, map[string]any{"v": 1}, time.Now())
	waitFor(t, "the retried batch", func() bool { return s.Written() == 1 })
	s.Add("m", map[string]string{"k": "b"}, map[string]any{"v": 2}, time.Now())
	waitFor(t, "the refused batch", func() bool { return s.Dropped() == 1 })
	s.Add("m", map[string]string{"k": "c"}, map[string]any{"v": 3}, time.Now())
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s.Written() != 2 || s.Dropped() != 1 {
		t.Errorf("written %d, dropped %d; want 2 and 1", s.Written(), s.Dropped())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 5 || !strings.HasPrefix(bodies[0], "m,k=a v=1i ") || bodies[0] != bodies[2] || !strings.HasPrefix(bodies[3], "m,k=b ") {
		t.Errorf("requests: %q", bodies)
	}
	if strings.Contains(logs.String(), "s3cret") {
		t.Errorf("the log shows the password:\n%s", logs.String())
	}
}

func TestSinkCloseDropsWhatItCannotSend(t *testing.T) {
	srv := newStallServer(t)
	s, err := New(Config{URL: srv.URL, Database: "d", BatchSize: 10, FlushInterval: time.Hour, WriteTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		s.Add("m", nil, map[string]any{"v": i}, time.Now())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	s.Add("m", nil, map[string]any{"v": 9}, time.Now())
	if s.Written() != 0 || s.Dropped() != 6 {
		t.Errorf("written %d, dropped %d; want 0 and 6", s.Written(), s.Dropped())
	}
}

// The InfluxDB 2 settings (org, bucket, token) go to the same write API;
// a 1.8 server takes "database/retention-policy" as the bucket and
// ignores the org (and, without authentication, the token).
func TestSinkV2Settings(t *testing.T) {
	base := influxURL(t)
	db := tempDatabase(t, base)
	s, err := New(Config{URL: base, Org: "dw", Bucket: db + "/autogen", Token: "unused", FlushInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	Capacity(s, 0, 1, time.Now())
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rows := influxQL(t, base, db, `SELECT "total" FROM "capacity"`); len(rows) != 1 || rows[0]["total"] != 1.0 {
		t.Errorf("capacity points: %v (written %d, dropped %d)", rows, s.Written(), s.Dropped())
	}
}
