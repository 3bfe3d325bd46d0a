package tc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.dockerworker.dev/docker-worker/worker/internal/backoff"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultRetries   = 5
	DefaultBaseDelay = 100 * time.Millisecond
	DefaultMaxDelay  = 30 * time.Second
)

// retryJitter spreads each retry delay over ±25 %, as Taskcluster's own
// clients do (their randomizationFactor).
const retryJitter = 0.25

// maxResponseBody bounds how much of a JSON response Request reads.
const maxResponseBody = 64 << 20

// Config configures a Client.
type Config struct {
	// RootURL is the deployment root, e.g. https://tc.example.com.
	RootURL string
	// Credentials sign every request; nil sends unauthenticated requests.
	Credentials *Credentials
	// HTTPClient sends the requests; nil means an http.Client whose
	// transport bounds dialing (DefaultDialTimeout), the TLS handshake
	// (DefaultTLSHandshakeTimeout) and the wait for response headers (the
	// attempt timeout). Its CheckRedirect is not used by Download, which
	// follows redirects itself. Its Timeout, if any, bounds every attempt,
	// long transfers included, so it is best left zero.
	HTTPClient *http.Client
	// Retries is how many times a request is retried after a 5xx answer or a
	// network error: 0 means DefaultRetries, a negative value disables retries.
	Retries int
	// BaseDelay and MaxDelay shape the backoff between attempts: the n-th
	// retry waits BaseDelay × 2^(n−1), at most MaxDelay, ±25 % jitter; zero
	// means DefaultBaseDelay and DefaultMaxDelay.
	BaseDelay, MaxDelay time.Duration
	// AttemptTimeout bounds each attempt of a JSON call (Request and the
	// calls built on it), from sending the request to the last byte of the
	// answer; an attempt that runs out is retried like a network error.
	// Zero means DefaultAttemptTimeout; negative means no bound.
	AttemptTimeout time.Duration
	// StallTimeout aborts an attempt of a download (Download, Open) or an
	// upload (PutArtifact, UploadObjectArtifact) that moves no byte for
	// this long; there is no bound on the total time of a transfer that
	// keeps moving. Zero means DefaultStallTimeout; negative means no bound.
	StallTimeout time.Duration
	// Now is the clock used for Hawk timestamps; nil means time.Now.
	Now func() time.Time
	// OnFailure, when set, is told about every call of Request (and of
	// the methods built on it) that fails for good, its retries done,
	// unless the caller's context ended. It must not block. Clients made
	// by WithCredentials keep it.
	OnFailure func(FailedCall)
}

// FailedCall is a call that failed for good (see Config.OnFailure).
type FailedCall struct {
	// Service is the service ("queue", "object", "index", ...).
	Service string
	// Method is the API method (see APIMethod).
	Method string
	// Status is the HTTP answer, 0 when there was none.
	Status int
	Err    error
}

// Client calls Taskcluster services under one root URL. It is safe for
// concurrent use and never mutated after New; WithCredentials returns a copy.
type Client struct {
	rootURL string
	creds   *Credentials
	http    *http.Client
	retries int
	backoff backoff.Policy
	now     func() time.Time

	attemptTimeout, stallTimeout time.Duration
	onFailure                    func(FailedCall)
}

// New returns a Client for cfg, filling in defaults.
func New(cfg Config) *Client {
	c := &Client{
		rootURL: strings.TrimRight(cfg.RootURL, "/"),
		http:    cfg.HTTPClient,
		retries: cfg.Retries,
		backoff: backoff.Policy{Base: cfg.BaseDelay, Max: cfg.MaxDelay, Jitter: retryJitter},
		now:     cfg.Now,

		onFailure:      cfg.OnFailure,
		attemptTimeout: durationOr(cfg.AttemptTimeout, DefaultAttemptTimeout),
		stallTimeout:   durationOr(cfg.StallTimeout, DefaultStallTimeout),
	}
	if cfg.Credentials != nil {
		creds := cloneCredentials(*cfg.Credentials)
		c.creds = &creds
	}
	if c.http == nil {
		c.http = &http.Client{Transport: newTransport(transportTimeouts{
			dial:           DefaultDialTimeout,
			tlsHandshake:   DefaultTLSHandshakeTimeout,
			responseHeader: c.attemptTimeout,
		})}
	}
	switch {
	case c.retries == 0:
		c.retries = DefaultRetries
	case c.retries < 0:
		c.retries = 0
	}
	if c.backoff.Base <= 0 {
		c.backoff.Base = DefaultBaseDelay
	}
	if c.backoff.Max <= 0 {
		c.backoff.Max = DefaultMaxDelay
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c
}

// durationOr is d, or def when d is zero; a negative d (no bound) is 0.
func durationOr(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

func cloneCredentials(c Credentials) Credentials {
	if c.AuthorizedScopes != nil {
		c.AuthorizedScopes = append([]string{}, c.AuthorizedScopes...)
	}
	return c
}

// WithCredentials returns a copy of c that signs with creds, typically the
// temporary credentials of one claimed run.
func (c *Client) WithCredentials(creds Credentials) *Client {
	cp := *c
	creds = cloneCredentials(creds)
	cp.creds = &creds
	return &cp
}

// RootURL returns the root URL the client was built with, without a
// trailing slash.
func (c *Client) RootURL() string { return c.rootURL }

// PathEscape escapes s for use as one path segment ("/" becomes "%2F").
func PathEscape(s string) string { return url.PathEscape(s) }

// ServiceURL returns <rootUrl>/api/<service>/v1<path>; path must already be
// escaped (see PathEscape).
func (c *Client) ServiceURL(service, path string) string {
	return c.rootURL + "/api/" + service + "/v1" + path
}

// Request calls method on <rootUrl>/api/<service>/v1<path>?<query>. path
// segments must already be escaped with PathEscape; they are sent, and signed,
// exactly as given. in, when non-nil, is sent as a JSON body (a
// json.RawMessage is sent as is); out, when non-nil, receives the decoded
// JSON answer (an empty 2xx body leaves it untouched). 5xx answers,
// network errors and attempts that time out (Config.AttemptTimeout) are
// retried with backoff, each attempt freshly signed; other non-2xx answers
// return an *APIError at once, except a 401 refusing a replayed nonce (see
// send).
func (c *Client) Request(ctx context.Context, service, method, path string, query url.Values, in, out any) error {
	rawURL := c.ServiceURL(service, path)
	if len(query) > 0 {
		rawURL += "?" + query.Encode()
	}
	if u, err := url.Parse(rawURL); err != nil {
		return fmt.Errorf("tc: %s %s: %w", method, rawURL, err)
	} else if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("tc: %s %s: root URL %q is not an absolute http(s) URL", method, rawURL, c.rootURL)
	}
	var body []byte
	var err error
	if in != nil {
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("tc: %s %s: encode request: %w", method, rawURL, err)
		}
	}
	var respBody []byte
	err = c.retry(ctx, func() (bool, error) {
		actx, cancel := c.attemptContext(ctx)
		defer cancel()
		resp, err := c.send(c.http, true, func() (*http.Request, error) {
			req, err := http.NewRequestWithContext(actx, method, rawURL, nil)
			if err != nil {
				return nil, fmt.Errorf("tc: %s %s: %w", method, rawURL, err)
			}
			if body != nil {
				req.Body = io.NopCloser(bytes.NewReader(body))
				req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
				req.ContentLength = int64(len(body))
				req.Header.Set("Content-Type", "application/json")
			}
			req.Header.Set("Accept", "application/json")
			return req, nil
		})
		if err != nil {
			var se *sendError
			if errors.As(err, &se) {
				return true, fmt.Errorf("tc: %s %s: %w", method, rawURL, attemptError(ctx, actx, withoutURL(se.err)))
			}
			return false, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
		if err != nil {
			return true, fmt.Errorf("tc: %s %s: read response: %w", method, rawURL, attemptError(ctx, actx, err))
		}
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return resp.StatusCode >= 500, newAPIError(method, rawURL, resp.StatusCode, b)
		}
		respBody = b
		return false, nil
	})
	if err != nil {
		if c.onFailure != nil && ctx.Err() == nil {
			c.onFailure(FailedCall{Service: service, Method: APIMethod(service, method, path), Status: StatusCode(err), Err: err})
		}
		return err
	}
	if out == nil || len(bytes.TrimSpace(respBody)) == 0 {
		return nil
	}
	if err := json.Unmarshal(respBody, out); err != nil {
		return fmt.Errorf("tc: %s %s: decode response: %w", method, rawURL, err)
	}
	return nil
}

// sign sets the Hawk Authorization header on req when the client has
// credentials; it signs req.URL exactly as it will be sent.
func (c *Client) sign(req *http.Request) error {
	if c.creds == nil {
		return nil
	}
	h, err := SignRequest(*c.creds, req.Method, req.URL, c.now())
	if err != nil {
		return fmt.Errorf("tc: sign %s %s: %w", req.Method, req.URL.Redacted(), err)
	}
	req.Header.Set("Authorization", h)
	return nil
}

// maxResigns bounds how many times send signs and sends one request
// again after the server refused its nonce as already used.
const maxResigns = 2

// sendError is a failure to get any answer from the server (a network
// error or a timeout), as opposed to a failure to build or sign the request.
type sendError struct{ err error }

func (e *sendError) Error() string { return e.err.Error() }
func (e *sendError) Unwrap() error { return e.err }

// send builds a request with build, signs it when sign is set, and sends it
// with hc. Every send carries a fresh signature, but net/http's transport
// may send one request twice on its own: when a reused keep-alive
// connection dies after the request went out and before any answer came,
// it resends an idempotent request (a GET) with the same headers, so the
// same Hawk nonce reaches the server twice and the server, which already
// saw it, answers 401. A 401 that names the nonce is therefore taken as
// this replay, and the request is built, signed afresh and sent again (at
// most maxResigns times); the answer's body is kept for the caller
// otherwise. Errors from hc.Do come back as *sendError.
func (c *Client) send(hc *http.Client, sign bool, build func() (*http.Request, error)) (*http.Response, error) {
	for n := 0; ; n++ {
		req, err := build()
		if err != nil {
			return nil, err
		}
		if sign {
			if err := c.sign(req); err != nil {
				return nil, err
			}
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, &sendError{err}
		}
		if resp.StatusCode != http.StatusUnauthorized || req.Header.Get("Authorization") == "" || n >= maxResigns {
			return resp, nil
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, errorBodyLimit))
		resp.Body.Close()
		if err != nil {
			return nil, &sendError{fmt.Errorf("read response: %w", err)}
		}
		if !nonceRefused(b) {
			resp.Body = io.NopCloser(bytes.NewReader(b))
			return resp, nil
		}
	}
}

// nonceRefused reports whether a 401 body says the request's Hawk nonce
// was refused: Taskcluster's auth service answers "Invalid nonce", the
// embedded queue "hawk nonce ... was already used".
func nonceRefused(body []byte) bool {
	msg := string(body)
	var tcErr struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &tcErr) == nil && tcErr.Message != "" {
		msg = tcErr.Message
	}
	return strings.Contains(strings.ToLower(msg), "nonce")
}

// retry runs attempt until it succeeds, fails with retry == false, or the
// retries are used up, pausing between attempts as the client's backoff
// policy says. It stops early when ctx is done.
func (c *Client) retry(ctx context.Context, attempt func() (retry bool, err error)) error {
	for n := 0; ; n++ {
		retry, err := attempt()
		if err == nil {
			return nil
		}
		if !retry {
			return err
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			if errors.Is(err, ctxErr) {
				return err
			}
			return fmt.Errorf("%w (last error: %w)", ctxErr, err)
		}
		delay := c.backoff.Delay(n + 1)
		if until, ok := retryDeadline(ctx); ok {
			// A retry deadline replaces the attempt count: keep trying
			// while the next attempt would still start before it.
			left := until.Sub(c.now())
			if left <= 0 {
				return fmt.Errorf("giving up after %d attempts (retry deadline %s passed): %w", n+1, until.UTC().Format(time.RFC3339), err)
			}
			delay = min(delay, left)
		} else if n >= c.retries {
			if c.retries == 0 {
				return err
			}
			return fmt.Errorf("giving up after %d attempts: %w", n+1, err)
		}
		if werr := backoff.Wait(ctx, delay); werr != nil {
			return fmt.Errorf("%w (last error: %w)", werr, err)
		}
	}
}

// retryUntilKey carries a retry deadline in a context.
type retryUntilKey struct{}

// RetryUntil returns a context under which requests that fail with a 5xx
// answer or a network error are retried until t (with the client's
// backoff, each attempt signed afresh) instead of the client's fixed
// number of attempts: for calls whose window is known, such as a reclaim
// or a report that may succeed any time before the claim's takenUntil.
func RetryUntil(ctx context.Context, t time.Time) context.Context {
	return context.WithValue(ctx, retryUntilKey{}, t)
}

// retryDeadline returns the deadline set by RetryUntil, if any.
func retryDeadline(ctx context.Context) (time.Time, bool) {
	t, ok := ctx.Value(retryUntilKey{}).(time.Time)
	return t, ok
}
