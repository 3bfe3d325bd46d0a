// Package faultproxy is an HTTP reverse proxy on a loopback port that
// injects the faults a worker meets on real networks: 5xx answers given
// instead of forwarding or after the upstream already applied the request,
// added delays, connections dropped in the middle of the request or the
// response body or after forwarding with no answer at all, requests that are accepted and never answered (a black
// hole), and periods in which the whole address refuses connections before
// coming back on the same port.
//
// Which request gets which fault is drawn from a random source seeded by
// [Config.Seed], so the same seed and the same sequence of requests give
// the same faults; [Proxy.Queue] forces the faults of the next requests for
// tests that need one exact failure. [Proxy.Counts] reports what was
// injected. A Proxy is safe for concurrent use, and [Proxy.Close] stops its
// listener, its connections and every request it holds. The Host header is
// forwarded as the client sent it, so Hawk signatures made for the proxy's
// address verify upstream. It is a test helper.
package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Fault is one kind of injected failure.
type Fault int

const (
	// None forwards the request unchanged.
	None Fault = iota
	// ErrorBefore answers a 5xx without forwarding the request.
	ErrorBefore
	// ErrorAfter forwards the request, discards the upstream answer and
	// answers a 5xx: the upstream applied the request, the client sees a
	// failure.
	ErrorAfter
	// DropRequestBody reads part of the request body, then closes the
	// connection without forwarding anything.
	DropRequestBody
	// DropResponseBody forwards the request, sends the status line, the
	// headers (with the full Content-Length) and part of the body, then
	// closes the connection. An answer without a body is cut after its
	// status line, so the client still gets no complete answer.
	DropResponseBody
	// BlackHole accepts the request and never answers; the connection is
	// held until the client closes it or the proxy is closed.
	BlackHole
	// DropAnswer forwards the request and closes the connection without
	// sending a byte of the answer: the upstream applied the request, the
	// client sees the connection end. (net/http's transport resends an
	// idempotent request that meets this on a reused connection.)
	DropAnswer
)

func (f Fault) String() string {
	switch f {
	case None:
		return "none"
	case ErrorBefore:
		return "error-before"
	case ErrorAfter:
		return "error-after"
	case DropRequestBody:
		return "drop-request-body"
	case DropResponseBody:
		return "drop-response-body"
	case BlackHole:
		return "black-hole"
	case DropAnswer:
		return "drop-answer"
	}
	return "fault(" + strconv.Itoa(int(f)) + ")"
}

// Rates are the fractions (0 to 1) of eligible requests that get each
// fault. At most one of the faults is drawn per request, so the fault
// fractions must add up to at most 1; Delay is drawn on its own and comes
// on top of any fault.
type Rates struct {
	ErrorBefore      float64
	ErrorAfter       float64
	DropRequestBody  float64
	DropResponseBody float64
	BlackHole        float64
	DropAnswer       float64
	// Delay is the fraction of requests held for a random time between
	// DelayMin and DelayMax before anything else happens.
	Delay              float64
	DelayMin, DelayMax time.Duration
	// Statuses are the answers of ErrorBefore and ErrorAfter, one drawn
	// per fault; empty means 500, 502 and 503.
	Statuses []int
	// Match selects the requests faults may be injected into (e.g. only
	// PUTs); nil means every request. Requests it rejects are forwarded
	// unchanged and are not counted as eligible.
	Match func(*http.Request) bool
}

func (r Rates) check() error {
	for _, v := range []float64{r.ErrorBefore, r.ErrorAfter, r.DropRequestBody, r.DropResponseBody, r.BlackHole, r.DropAnswer, r.Delay} {
		if v < 0 || v > 1 {
			return fmt.Errorf("faultproxy: rate %v is not between 0 and 1", v)
		}
	}
	if sum := r.ErrorBefore + r.ErrorAfter + r.DropRequestBody + r.DropResponseBody + r.BlackHole + r.DropAnswer; sum > 1+1e-9 {
		return fmt.Errorf("faultproxy: the fault rates add up to %v, more than 1", sum)
	}
	if r.DelayMin < 0 || r.DelayMax < r.DelayMin {
		return fmt.Errorf("faultproxy: delay range %s–%s is invalid", r.DelayMin, r.DelayMax)
	}
	for _, s := range r.Statuses {
		if s < 500 || s > 599 {
			return fmt.Errorf("faultproxy: status %d is not a 5xx", s)
		}
	}
	return nil
}

// Config configures a Proxy.
type Config struct {
	// Target is the upstream base URL (scheme and host; a path is
	// prefixed to every request's path).
	Target string
	// Seed seeds the random draws.
	Seed uint64
	// Rates are the initial fault rates; change them with SetRates.
	Rates Rates
}

// Counts are how many requests the proxy saw and what it did to them.
type Counts struct {
	// Requests is every request that reached the handler; Eligible those
	// Match accepted.
	Requests, Eligible int
	// Forwarded is the requests sent upstream (including ErrorAfter and
	// DropResponseBody, which are forwarded before they fail).
	Forwarded int
	Delayed   int
	// Injected counts the requests given each fault (None excluded).
	Injected map[Fault]int
	// Downs is how many times the proxy went down; ConnsCut the open
	// connections it closed when it did.
	Downs, ConnsCut int
}

// Proxy is a running fault-injecting proxy.
type Proxy struct {
	addr   string // host:port, fixed for the proxy's life
	target *url.URL
	srv    *http.Server
	up     *http.Transport
	ctx    context.Context // done when the proxy is closed
	stop   context.CancelFunc
	wg     sync.WaitGroup // handlers and held connections

	mu       sync.Mutex
	rng      *rand.Rand
	rates    Rates
	queued   []Fault
	counts   Counts
	ln       net.Listener // nil while down or closed
	conns    map[net.Conn]struct{}
	held     map[net.Conn]struct{} // hijacked connections
	upTimer  *time.Timer
	closed   bool
	serveErr error
}

// New starts a proxy on 127.0.0.1 with a free port in front of cfg.Target.
func New(cfg Config) (*Proxy, error) {
	target, err := url.Parse(cfg.Target)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: target: %w", err)
	}
	if target.Scheme != "http" && target.Scheme != "https" || target.Host == "" {
		return nil, fmt.Errorf("faultproxy: target %q is not an absolute http(s) URL", cfg.Target)
	}
	if err := cfg.Rates.check(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	p := &Proxy{
		addr:   ln.Addr().String(),
		target: target,
		up: &http.Transport{
			DisableCompression:  true,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     30 * time.Second,
		},
		ctx:   ctx,
		stop:  stop,
		rng:   rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		rates: cfg.Rates,
		conns: map[net.Conn]struct{}{},
		held:  map[net.Conn]struct{}{},
	}
	p.counts.Injected = map[Fault]int{}
	p.srv = &http.Server{
		Handler:           http.HandlerFunc(p.handle),
		ReadHeaderTimeout: 30 * time.Second,
		ConnState:         p.connState,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	p.serve(ln)
	return p, nil
}

// URL is the proxy's base URL, http://127.0.0.1:<port>; it stays the
// same across Down and Up.
func (p *Proxy) URL() string { return "http://" + p.addr }

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.addr }

// SetRates replaces the fault rates for the requests that arrive from now on.
func (p *Proxy) SetRates(r Rates) error {
	if err := r.check(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rates = r
	return nil
}

// Queue forces the faults of the next eligible requests, in order, before
// any random draw; None lets one request through untouched.
func (p *Proxy) Queue(faults ...Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.queued = append(p.queued, faults...)
}

// Counts returns a snapshot of the counters.
func (p *Proxy) Counts() Counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.counts
	c.Injected = make(map[Fault]int, len(p.counts.Injected))
	for k, v := range p.counts.Injected {
		c.Injected[k] = v
	}
	return c
}

// Down makes the proxy unreachable: it closes its listener, so new
// connections are refused, and closes every open connection (as a crashed
// server would). With d > 0 it comes back by itself after d; otherwise it
// stays down until Up.
func (p *Proxy) Down(d time.Duration) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	if p.upTimer != nil {
		p.upTimer.Stop()
		p.upTimer = nil
	}
	ln := p.ln
	p.ln = nil
	var open []net.Conn
	if ln != nil {
		p.counts.Downs++
		for c := range p.conns {
			open = append(open, c)
		}
		for c := range p.held {
			open = append(open, c)
		}
		p.counts.ConnsCut += len(open)
	}
	if d > 0 {
		p.upTimer = time.AfterFunc(d, func() { _ = p.Up() })
	}
	p.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	for _, c := range open {
		reset(c)
	}
}

// Up brings the proxy back on its address after Down; it does nothing when
// the proxy is up. It fails when the address was taken in the meantime or
// the proxy is closed.
func (p *Proxy) Up() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("faultproxy: closed")
	}
	if p.upTimer != nil {
		p.upTimer.Stop()
		p.upTimer = nil
	}
	if p.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.serveErr = fmt.Errorf("faultproxy: listen again on %s: %w", p.addr, err)
		return p.serveErr
	}
	p.serveLocked(ln)
	return nil
}

// IsDown reports whether the proxy is down (or closed).
func (p *Proxy) IsDown() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ln == nil
}

// Close stops the proxy: the listener, every connection, every held or
// delayed request. It waits for the proxy's goroutines and returns the
// error of a failed automatic Up, if any.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	if p.upTimer != nil {
		p.upTimer.Stop()
	}
	ln := p.ln
	p.ln = nil
	held := make([]net.Conn, 0, len(p.held))
	for c := range p.held {
		held = append(held, c)
	}
	err := p.serveErr
	p.mu.Unlock()

	p.stop()
	if ln != nil {
		ln.Close()
	}
	_ = p.srv.Close()
	for _, c := range held {
		c.Close()
	}
	p.wg.Wait()
	p.up.CloseIdleConnections()
	return err
}

func (p *Proxy) serve(ln net.Listener) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.serveLocked(ln)
}

func (p *Proxy) serveLocked(ln net.Listener) {
	p.ln = ln
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		_ = p.srv.Serve(ln) // returns when ln is closed
	}()
}

func (p *Proxy) connState(c net.Conn, s http.ConnState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch s {
	case http.StateNew:
		p.conns[c] = struct{}{}
	case http.StateHijacked, http.StateClosed:
		delete(p.conns, c)
	}
}

// reset closes c with an RST where it can, as a crashed peer would.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

// draw decides the fault and delay of one request.
func (p *Proxy) draw(r *http.Request) (Fault, time.Duration, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counts.Requests++
	rates := p.rates
	if rates.Match != nil && !rates.Match(r) {
		return None, 0, 0
	}
	p.counts.Eligible++
	var delay time.Duration
	if rates.Delay > 0 && p.rng.Float64() < rates.Delay {
		delay = rates.DelayMin
		if span := rates.DelayMax - rates.DelayMin; span > 0 {
			delay += time.Duration(p.rng.Int64N(int64(span) + 1))
		}
		p.counts.Delayed++
	}
	f := None
	if len(p.queued) > 0 {
		f, p.queued = p.queued[0], p.queued[1:]
	} else {
		x := p.rng.Float64()
		for _, c := range []struct {
			f    Fault
			rate float64
		}{
			{BlackHole, rates.BlackHole}, {ErrorBefore, rates.ErrorBefore}, {DropRequestBody, rates.DropRequestBody},
			{ErrorAfter, rates.ErrorAfter}, {DropResponseBody, rates.DropResponseBody}, {DropAnswer, rates.DropAnswer},
		} {
			if x < c.rate {
				f = c.f
				break
			}
			x -= c.rate
		}
	}
	status := 0
	if f == ErrorBefore || f == ErrorAfter {
		statuses := rates.Statuses
		if len(statuses) == 0 {
			statuses = []int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable}
		}
		status = statuses[p.rng.IntN(len(statuses))]
	}
	if f != None {
		p.counts.Injected[f]++
	}
	return f, delay, status
}

// enter registers a handler with the WaitGroup Close waits on; false
// once the proxy is closed.
func (p *Proxy) enter() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.wg.Add(1)
	return true
}

func (p *Proxy) handle(w http.ResponseWriter, r *http.Request) {
	if !p.enter() {
		writeError(w, http.StatusServiceUnavailable, "closed")
		return
	}
	defer p.wg.Done()
	fault, delay, status := p.draw(r)
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	switch fault {
	case BlackHole:
		p.blackHole(w)
	case ErrorBefore:
		writeError(w, status, "injected before forwarding")
	case DropRequestBody:
		p.dropRequestBody(w, r)
	case ErrorAfter:
		resp, err := p.forward(r)
		if err != nil {
			writeError(w, http.StatusBadGateway, err.Error())
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		writeError(w, status, "injected after forwarding")
	case DropResponseBody:
		p.dropResponseBody(w, r)
	case DropAnswer:
		resp, err := p.forward(r)
		if err != nil {
			writeError(w, http.StatusBadGateway, err.Error())
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if c, ok := p.hijack(w); ok {
			p.release(c)
			c.Close()
		}
	default:
		p.pass(w, r)
	}
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Connection", "close")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, "faultproxy: "+msg+"\n")
}

// hijack takes the connection over and tracks it until release.
func (p *Proxy) hijack(w http.ResponseWriter) (net.Conn, bool) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		return nil, false
	}
	c, _, err := hj.Hijack()
	if err != nil {
		return nil, false
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.Close()
		return nil, false
	}
	p.held[c] = struct{}{}
	p.mu.Unlock()
	return c, true
}

func (p *Proxy) release(c net.Conn) {
	p.mu.Lock()
	delete(p.held, c)
	p.mu.Unlock()
}

// blackHole holds the connection, reading and discarding whatever comes,
// until the client closes it or the proxy is closed or goes down.
func (p *Proxy) blackHole(w http.ResponseWriter) {
	c, ok := p.hijack(w)
	if !ok {
		return
	}
	defer p.release(c)
	defer c.Close()
	_, _ = io.Copy(io.Discard, c)
}

// dropRequestBody reads about half of the request body (at least one
// byte when there is one) and resets the connection.
func (p *Proxy) dropRequestBody(w http.ResponseWriter, r *http.Request) {
	n := int64(1)
	if r.ContentLength > 1 {
		n = r.ContentLength / 2
	}
	_, _ = io.CopyN(io.Discard, r.Body, n)
	c, ok := p.hijack(w)
	if !ok {
		return
	}
	p.release(c)
	reset(c)
}

// dropResponseBody forwards the request and sends the answer's status
// line, headers and about half of its body before closing the connection
// (a FIN, so that the client reads the partial body before the end).
func (p *Proxy) dropResponseBody(w http.ResponseWriter, r *http.Request) {
	resp, err := p.forward(r)
	if err != nil {
		writeError(w, http.StatusBadGateway, err.Error())
		return
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		writeError(w, http.StatusBadGateway, "read upstream answer: "+err.Error())
		return
	}
	c, ok := p.hijack(w)
	if !ok {
		return
	}
	defer p.release(c)
	defer c.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", resp.StatusCode, http.StatusText(resp.StatusCode))
	h := resp.Header.Clone()
	for _, k := range []string{"Connection", "Transfer-Encoding", "Content-Length", "Keep-Alive"} {
		h.Del(k)
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if len(body) == 0 {
		_, _ = io.WriteString(c, b.String())
		return
	}
	_ = h.Write(&b)
	b.WriteString("\r\n")
	if _, err := io.WriteString(c, b.String()); err != nil {
		return
	}
	_, _ = c.Write(body[:len(body)/2])
}

// hopHeaders are not forwarded (RFC 9110, section 7.6.1).
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// forward sends r upstream, keeping its Host header, and returns the answer.
func (p *Proxy) forward(r *http.Request) (*http.Response, error) {
	u := *p.target
	u.Path = strings.TrimRight(p.target.Path, "/") + r.URL.Path
	if p.target.RawPath != "" || r.URL.RawPath != "" {
		u.RawPath = strings.TrimRight(p.target.EscapedPath(), "/") + r.URL.EscapedPath()
	}
	u.RawQuery = r.URL.RawQuery
	body := r.Body
	if r.ContentLength == 0 {
		body = nil
	}
	out, err := http.NewRequestWithContext(r.Context(), r.Method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: %w", err)
	}
	out.ContentLength = r.ContentLength
	out.Header = r.Header.Clone()
	for _, k := range hopHeaders {
		out.Header.Del(k)
	}
	out.Host = r.Host
	p.mu.Lock()
	p.counts.Forwarded++
	p.mu.Unlock()
	resp, err := p.up.RoundTrip(out)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: upstream: %w", err)
	}
	return resp, nil
}

// pass forwards r and streams the answer back unchanged.
func (p *Proxy) pass(w http.ResponseWriter, r *http.Request) {
	resp, err := p.forward(r)
	if err != nil {
		writeError(w, http.StatusBadGateway, err.Error())
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	for _, k := range hopHeaders {
		w.Header().Del(k)
	}
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			_ = rc.Flush()
		}
		if err != nil {
			return
		}
	}
}
