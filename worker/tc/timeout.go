package tc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Defaults of the bounds on each request; see Config.
const (
	// DefaultAttemptTimeout bounds one attempt of a JSON call. The queue's
	// claimWork holds a request for about 20 s when there is no work, so
	// it must stay well above that.
	DefaultAttemptTimeout = 60 * time.Second
	// DefaultStallTimeout aborts an attempt of a download or upload that
	// moved no byte for this long.
	DefaultStallTimeout = 2 * time.Minute
	// DefaultDialTimeout and DefaultTLSHandshakeTimeout bound connection
	// setup in the transport New builds when Config.HTTPClient is nil.
	DefaultDialTimeout         = 30 * time.Second
	DefaultTLSHandshakeTimeout = 10 * time.Second
)

// ErrTimeout is in the chain of an error whose attempt was given up
// because the server did not answer in time: a JSON call that took longer
// than the attempt timeout, a transfer that made no progress for the stall
// timeout, or a connection, TLS handshake or response header that did not
// come in time. Such attempts are retried like network errors.
var ErrTimeout = errors.New("timed out")

// IsTimeout reports whether err is (or wraps) a timeout: ErrTimeout or a
// net.Error whose Timeout is true.
func IsTimeout(err error) bool {
	if errors.Is(err, ErrTimeout) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// transportTimeouts bound the phases of a request in the transport.
type transportTimeouts struct {
	dial, tlsHandshake, responseHeader time.Duration
}

// newTransport is the transport of the http.Client New makes when none is
// given: proxies from the environment, HTTP/2 where the server offers it,
// and bounds on dialing, the TLS handshake and the wait for response
// headers once the request (body included) is sent. Bodies are bounded by
// the client's attempt and stall timeouts instead, which know whether
// bytes are still moving.
func newTransport(t transportTimeouts) *http.Transport {
	d := &net.Dialer{Timeout: t.dial, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   t.tlsHandshake,
		ResponseHeaderTimeout: t.responseHeader,
		ExpectContinueTimeout: time.Second,
	}
}

// attemptContext returns the context of one attempt of a JSON call,
// bounded by the client's attempt timeout, and its cancel function.
func (c *Client) attemptContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.attemptTimeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeoutCause(ctx, c.attemptTimeout,
		fmt.Errorf("%w: no complete answer within %s", ErrTimeout, c.attemptTimeout))
}

// attemptError explains err, the failure of an attempt run under actx (a
// child of ctx): when actx ended on its own (attempt timeout, stall) while
// ctx is still live, the error says so and wraps ErrTimeout; transport
// timeouts are marked with ErrTimeout too.
func attemptError(ctx, actx context.Context, err error) error {
	if ctx.Err() == nil && actx.Err() != nil {
		if cause := context.Cause(actx); errors.Is(cause, ErrTimeout) {
			return cause
		}
	}
	if !errors.Is(err, ErrTimeout) && IsTimeout(err) {
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return err
}

// watchdog cancels an attempt's context when the attempt made no progress
// for a while. Between arm and disarm the countdown runs; kick restarts it
// while armed. A watchdog with no timeout does nothing but cancel its
// context on stop.
type watchdog struct {
	d      time.Duration
	cancel context.CancelCauseFunc
	stall  error

	mu    sync.Mutex
	timer *time.Timer
	armed bool
}

// stallGuard returns the context of one transfer attempt and the watchdog
// that cancels it after the client's stall timeout without progress. The
// caller must call stop when the attempt is over.
func (c *Client) stallGuard(ctx context.Context) (context.Context, *watchdog) {
	actx, cancel := context.WithCancelCause(ctx)
	w := &watchdog{d: c.stallTimeout, cancel: cancel}
	if w.d > 0 {
		w.stall = fmt.Errorf("%w: no progress for %s", ErrTimeout, w.d)
		w.timer = time.AfterFunc(w.d, func() { cancel(w.stall) })
		w.timer.Stop()
	}
	return actx, w
}

// arm starts (or restarts) the countdown.
func (w *watchdog) arm() {
	if w.timer == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.armed = true
	w.timer.Reset(w.d)
}

// kick restarts the countdown if it is running: progress was made.
func (w *watchdog) kick() {
	if w.timer == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.armed {
		w.timer.Reset(w.d)
	}
}

// disarm stops the countdown.
func (w *watchdog) disarm() {
	if w.timer == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.armed = false
	w.timer.Stop()
}

// stop disarms the watchdog and ends the attempt's context.
func (w *watchdog) stop() {
	w.disarm()
	w.cancel(context.Canceled)
}

// watchedBody is a response body whose every Read must return within the
// stall timeout. Time between reads does not count, so a slow consumer is
// not taken for a stalled server.
type watchedBody struct {
	rc       io.ReadCloser
	ctx, act context.Context // the caller's and the attempt's
	wd       *watchdog
}

func (b *watchedBody) Read(p []byte) (int, error) {
	b.wd.arm()
	n, err := b.rc.Read(p)
	b.wd.disarm()
	if err != nil && err != io.EOF {
		err = attemptError(b.ctx, b.act, err)
	}
	return n, err
}

func (b *watchedBody) Close() error {
	err := b.rc.Close()
	b.wd.stop()
	return err
}

// progressBody is a request body whose reads count as progress of an
// upload: the transport reads it only as fast as the connection takes the
// bytes, so a stalled connection stops the reads.
type progressBody struct {
	rc io.ReadCloser
	wd *watchdog
}

func (b *progressBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.wd.kick()
	}
	return n, err
}

func (b *progressBody) Close() error { return b.rc.Close() }
