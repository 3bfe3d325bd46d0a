package faultproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// upstream is a test server that records what reaches it and answers
// with the request's method, path, query, Host and body.
type upstream struct {
	*httptest.Server
	hits atomic.Int32
	mu   sync.Mutex
	last []byte
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		u.hits.Add(1)
		u.mu.Lock()
		u.last = b
		u.mu.Unlock()
		w.Header().Set("X-Upstream", "yes")
		fmt.Fprintf(w, "%s %s?%s host=%s body=%s", r.Method, r.URL.Path, r.URL.RawQuery, r.Host, b)
	}))
	t.Cleanup(u.Close)
	return u
}

func start(t *testing.T, target string, cfg Config) *Proxy {
	t.Helper()
	cfg.Target = target
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

// client does not reuse connections, so that each request's fault is its own.
func client(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
}

func TestPassesRequestsThrough(t *testing.T) {
	up := newUpstream(t)
	p := start(t, up.URL+"/base", Config{})
	req, err := http.NewRequest(http.MethodPut, p.URL()+"/a%2Fb/c?x=1&y=2", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client(10 * time.Second).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	want := "PUT /base/a/b/c?x=1&y=2 host=" + p.Addr() + " body=hello"
	if resp.StatusCode != http.StatusOK || string(b) != want || resp.Header.Get("X-Upstream") != "yes" {
		t.Errorf("got %d %q (X-Upstream %q), want 200 %q", resp.StatusCode, b, resp.Header.Get("X-Upstream"), want)
	}
	c := p.Counts()
	if c.Requests != 1 || c.Eligible != 1 || c.Forwarded != 1 || len(c.Injected) != 0 {
		t.Errorf("counts %+v", c)
	}
}

func TestErrorBeforeDoesNotReachUpstream(t *testing.T) {
	up := newUpstream(t)
	p := start(t, up.URL, Config{Rates: Rates{ErrorBefore: 1, Statuses: []int{503}}})
	resp, err := client(10*time.Second).Post(p.URL()+"/x", "text/plain", strings.NewReader("body"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("status %d, want 503", resp.StatusCode)
	}
	if n := up.hits.Load(); n != 0 {
		t.Errorf("upstream got %d requests, want 0", n)
	}
	if c := p.Counts(); c.Injected[ErrorBefore] != 1 || c.Forwarded != 0 {
		t.Errorf("counts %+v", c)
	}
}

func TestErrorAfterReachesUpstream(t *testing.T) {
	up := newUpstream(t)
	p := start(t, up.URL, Config{Rates: Rates{ErrorAfter: 1}})
	resp, err := client(10*time.Second).Post(p.URL()+"/x", "text/plain", strings.NewReader("applied"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 500 || resp.StatusCode > 599 {
		t.Errorf("status %d, want a 5xx", resp.StatusCode)
	}
	up.mu.Lock()
	last := string(up.last)
	up.mu.Unlock()
	if n := up.hits.Load(); n != 1 || last != "applied" {
		t.Errorf("upstream got %d requests (last body %q), want the one", n, last)
	}
	if c := p.Counts(); c.Injected[ErrorAfter] != 1 || c.Forwarded != 1 {
		t.Errorf("counts %+v", c)
	}
}

func TestDropRequestBody(t *testing.T) {
	up := newUpstream(t)
	p := start(t, up.URL, Config{})
	p.Queue(DropRequestBody)
	body := bytes.Repeat([]byte("x"), 4<<20)
	_, err := client(10*time.Second).Post(p.URL()+"/x", "application/octet-stream", bytes.NewReader(body))
	if err == nil {
		t.Fatal("the upload succeeded through a dropped connection")
	}
	if n := up.hits.Load(); n != 0 {
		t.Errorf("upstream got %d requests, want 0", n)
	}
	// The queued fault is used up: the next request goes through.
	resp, err := client(10*time.Second).Post(p.URL()+"/x", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if c := p.Counts(); c.Injected[DropRequestBody] != 1 || c.Requests != 2 || up.hits.Load() != 1 {
		t.Errorf("counts %+v, upstream hits %d", c, up.hits.Load())
	}
}

func TestDropResponseBody(t *testing.T) {
	up := newUpstream(t)
	p := start(t, up.URL, Config{Rates: Rates{DropResponseBody: 1}})
	resp, err := client(10 * time.Second).Get(p.URL() + "/some/long/path/for/a/long/answer")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	b, err := io.ReadAll(resp.Body)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("read %d of %d bytes, err %v; want io.ErrUnexpectedEOF", len(b), resp.ContentLength, err)
	}
	if len(b) == 0 || int64(len(b)) >= resp.ContentLength {
		t.Errorf("got %d of %d bytes, want part of the body", len(b), resp.ContentLength)
	}
	if up.hits.Load() != 1 {
		t.Errorf("upstream hits %d, want 1", up.hits.Load())
	}
}

// An answer without a body is cut in its headers.
func TestDropResponseWithoutBody(t *testing.T) {
	empty := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(empty.Close)
	p := start(t, empty.URL, Config{})
	p.Queue(DropResponseBody)
	req, _ := http.NewRequest(http.MethodPut, p.URL()+"/x", strings.NewReader("b"))
	resp, err := client(10 * time.Second).Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got a complete answer %d", resp.StatusCode)
	}
	if c := p.Counts(); c.Forwarded != 1 || c.Injected[DropResponseBody] != 1 {
		t.Errorf("counts %+v", c)
	}
}

// DropAnswer applies the request upstream and answers nothing; a client
// whose keep-alive connection meets it resends a GET by itself, which the
// upstream then sees twice.
func TestDropAnswer(t *testing.T) {
	up := newUpstream(t)
	p := start(t, up.URL, Config{})
	p.Queue(DropAnswer)
	_, err := client(10*time.Second).Post(p.URL()+"/x", "text/plain", strings.NewReader("applied"))
	if err == nil {
		t.Fatal("got an answer")
	}
	if up.hits.Load() != 1 {
		t.Errorf("upstream hits %d, want 1", up.hits.Load())
	}

	keepAlive := &http.Client{Timeout: 10 * time.Second}
	for i := range 2 {
		if i == 1 {
			p.Queue(DropAnswer)
		}
		resp, err := keepAlive.Get(p.URL() + "/y")
		if err != nil {
			t.Fatalf("GET %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if c := p.Counts(); up.hits.Load() != 4 || c.Injected[DropAnswer] != 2 || c.Forwarded != 4 {
		t.Errorf("upstream hits %d, counts %+v; want the second GET resent", up.hits.Load(), c)
	}
}

func TestBlackHole(t *testing.T) {
	up := newUpstream(t)
	p, err := New(Config{Target: up.URL, Rates: Rates{BlackHole: 1}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = client(300 * time.Millisecond).Get(p.URL() + "/x")
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("got %v, want a timeout", err)
	}
	// A request still held when the proxy closes is let go.
	held := make(chan error, 1)
	go func() {
		resp, err := client(0).Get(p.URL() + "/y")
		if err == nil {
			resp.Body.Close()
		}
		held <- err
	}()
	for p.Counts().Injected[BlackHole] < 2 {
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-held:
		if err == nil {
			t.Error("the held request got an answer")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not release the held request")
	}
	if up.hits.Load() != 0 {
		t.Errorf("upstream hits %d, want 0", up.hits.Load())
	}
}

func TestDownAndUpOnTheSameAddress(t *testing.T) {
	up := newUpstream(t)
	p := start(t, up.URL, Config{})
	get := func() error {
		resp, err := client(5 * time.Second).Get(p.URL() + "/x")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	if err := get(); err != nil {
		t.Fatal(err)
	}
	p.Down(0)
	if err := get(); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("while down: got %v, want connection refused", err)
	}
	if err := p.Up(); err != nil {
		t.Fatal(err)
	}
	if err := get(); err != nil {
		t.Errorf("after Up: %v", err)
	}

	// Down for a period comes back by itself.
	p.Down(200 * time.Millisecond)
	if !p.IsDown() {
		t.Error("not down")
	}
	deadline := time.Now().Add(10 * time.Second)
	for p.IsDown() {
		if time.Now().After(deadline) {
			t.Fatal("the proxy did not come back up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := get(); err != nil {
		t.Errorf("after the period: %v", err)
	}
	if c := p.Counts(); c.Downs != 2 {
		t.Errorf("Downs = %d, want 2", c.Downs)
	}
}

func TestDownCutsOpenConnections(t *testing.T) {
	up := newUpstream(t)
	p := start(t, up.URL, Config{Rates: Rates{BlackHole: 1}})
	done := make(chan error, 1)
	go func() {
		resp, err := client(0).Get(p.URL() + "/x")
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	for p.Counts().Injected[BlackHole] < 1 {
		time.Sleep(10 * time.Millisecond)
	}
	p.Down(0)
	select {
	case err := <-done:
		if err == nil {
			t.Error("the request got an answer")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Down did not cut the held connection")
	}
	if c := p.Counts(); c.ConnsCut < 1 {
		t.Errorf("ConnsCut = %d", c.ConnsCut)
	}
}

func TestDelay(t *testing.T) {
	up := newUpstream(t)
	p := start(t, up.URL, Config{Rates: Rates{Delay: 1, DelayMin: 100 * time.Millisecond, DelayMax: 100 * time.Millisecond}})
	start := time.Now()
	resp, err := client(10 * time.Second).Get(p.URL() + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("answered after %s, before the delay", d)
	}
	if c := p.Counts(); c.Delayed != 1 || resp.StatusCode != http.StatusOK {
		t.Errorf("counts %+v, status %d", c, resp.StatusCode)
	}
}

// outcomes runs n sequential GETs through a proxy with seed and returns
// each one's status (0 for a failed request).
func outcomes(t *testing.T, target string, seed uint64, n int) []int {
	t.Helper()
	p := start(t, target, Config{Seed: seed, Rates: Rates{ErrorBefore: 0.3, ErrorAfter: 0.2, DropResponseBody: 0.1}})
	var got []int
	for range n {
		resp, err := client(10 * time.Second).Get(p.URL() + "/x")
		if err != nil {
			got = append(got, 0)
			continue
		}
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			got = append(got, -resp.StatusCode)
			continue
		}
		got = append(got, resp.StatusCode)
	}
	c := p.Counts()
	injected := 0
	for _, v := range c.Injected {
		injected += v
	}
	if c.Requests != n || injected == 0 || injected == n {
		t.Errorf("seed %d: counts %+v: want some but not all of %d requests faulted", seed, c, n)
	}
	return got
}

func TestSameSeedSameFaults(t *testing.T) {
	up := newUpstream(t)
	a := outcomes(t, up.URL, 7, 40)
	b := outcomes(t, up.URL, 7, 40)
	c := outcomes(t, up.URL, 8, 40)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("same seed, different faults:\n%v\n%v", a, b)
	}
	if fmt.Sprint(a) == fmt.Sprint(c) {
		t.Errorf("seeds 7 and 8 gave the same 40 outcomes: %v", a)
	}
}

func TestMatchLimitsFaults(t *testing.T) {
	up := newUpstream(t)
	p := start(t, up.URL, Config{Rates: Rates{ErrorBefore: 1, Match: func(r *http.Request) bool { return r.Method == http.MethodPut }}})
	resp, err := client(10 * time.Second).Get(p.URL() + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET: status %d, want 200", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodPut, p.URL()+"/x", strings.NewReader("b"))
	resp, err = client(10 * time.Second).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 500 {
		t.Errorf("PUT: status %d, want a 5xx", resp.StatusCode)
	}
	if c := p.Counts(); c.Requests != 2 || c.Eligible != 1 {
		t.Errorf("counts %+v", c)
	}
}

func TestConcurrentUse(t *testing.T) {
	up := newUpstream(t)
	p := start(t, up.URL, Config{Seed: 1, Rates: Rates{ErrorBefore: 0.2, ErrorAfter: 0.2, DropRequestBody: 0.1, DropResponseBody: 0.1,
		Delay: 0.2, DelayMax: 5 * time.Millisecond}})
	var wg sync.WaitGroup
	const workers, each = 8, 10
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if i == 5 && w == 0 {
					_ = p.SetRates(Rates{ErrorBefore: 0.5})
				}
				resp, err := client(10*time.Second).Post(p.URL()+"/x", "text/plain", strings.NewReader("payload"))
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				_ = p.Counts()
			}
		})
	}
	wg.Wait()
	if c := p.Counts(); c.Requests != workers*each {
		t.Errorf("Requests = %d, want %d", c.Requests, workers*each)
	}
}

func TestCloseStopsTheListener(t *testing.T) {
	up := newUpstream(t)
	p, err := New(Config{Target: up.URL})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Up(); err == nil {
		t.Error("Up after Close succeeded")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var d net.Dialer
	if c, err := d.DialContext(ctx, "tcp", p.Addr()); err == nil {
		c.Close()
		t.Error("the closed proxy still accepts connections")
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Target: "not a url"},
		{Target: "ftp://h/"},
		{Target: "http://h/", Rates: Rates{ErrorBefore: 0.6, ErrorAfter: 0.6}},
		{Target: "http://h/", Rates: Rates{Delay: 2}},
		{Target: "http://h/", Rates: Rates{Statuses: []int{404}}},
		{Target: "http://h/", Rates: Rates{DelayMin: time.Second}},
	} {
		if p, err := New(cfg); err == nil {
			p.Close()
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}
