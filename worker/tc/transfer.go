package tc

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// maxRedirects bounds how many redirects Download follows.
const maxRedirects = 10

// errorBodyLimit bounds how much of an error answer is read for the APIError.
const errorBodyLimit = 64 << 10

// Download GETs rawURL and copies the body to w, returning its Content-Type.
// Requests to the client's root URL host are Hawk-signed when the client has
// credentials; redirects (the queue answers 303 to storage) are followed, and
// requests to any other host carry no Authorization. A Content-Encoding: gzip
// body is un-gzipped. An attempt that moves no byte for the stall timeout
// (Config.StallTimeout) is aborted. Failures before any byte reaches w are
// retried like Request; a failure once w holds part of the body is not.
func (c *Client) Download(ctx context.Context, rawURL string, w io.Writer) (contentType string, err error) {
	start, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("tc: download %s: %w", rawURL, err)
	}
	err = c.retry(ctx, func() (bool, error) {
		actx, wd := c.stallGuard(ctx)
		defer wd.stop()
		wd.arm()
		resp, retry, err := c.follow(ctx, actx, start)
		wd.disarm()
		if err != nil {
			return retry, err
		}
		body := &watchedBody{rc: resp.Body, ctx: ctx, act: actx, wd: wd}
		defer body.Close()
		where := redact(resp.Request.URL)
		src := io.Reader(body)
		if strings.EqualFold(strings.TrimSpace(resp.Header.Get("Content-Encoding")), "gzip") {
			zr, err := gzip.NewReader(body)
			if err != nil {
				// A transfer failure before the gzip header is complete is
				// worth another attempt; a body that is not gzip is not.
				retry := !errors.Is(err, gzip.ErrHeader) && !errors.Is(err, gzip.ErrChecksum)
				return retry, fmt.Errorf("tc: download %s: gzip: %w", where, err)
			}
			defer zr.Close()
			src = zr
		}
		cw := &countingWriter{w: w}
		if _, err := io.Copy(cw, src); err != nil {
			return cw.n == 0 && !errors.Is(err, gzip.ErrHeader) && !errors.Is(err, gzip.ErrChecksum) && !errors.Is(err, errWrite),
				fmt.Errorf("tc: download %s: %w", where, err)
		}
		contentType = resp.Header.Get("Content-Type")
		return false, nil
	})
	if err != nil {
		return "", err
	}
	return contentType, nil
}

// errWrite marks a failure of the destination of a download, which is not
// retried.
var errWrite = errors.New("write")

// countingWriter counts what reaches w and marks w's failures with errWrite.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if err != nil {
		err = fmt.Errorf("%w: %w", errWrite, err)
	}
	return n, err
}

// follow GETs u and follows redirects by hand, so that only requests to the
// root URL's origin are signed. The requests run under actx, a child of ctx
// that may end on its own (a stall). It returns the final 2xx response, or
// an error and whether retrying may help.
func (c *Client) follow(ctx, actx context.Context, u *url.URL) (*http.Response, bool, error) {
	hc := *c.http
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	root, _ := url.Parse(c.rootURL)
	for hop := 0; ; hop++ {
		resp, err := c.send(&hc, root != nil && sameOrigin(u, root), func() (*http.Request, error) {
			req, err := http.NewRequestWithContext(actx, http.MethodGet, u.String(), nil)
			if err != nil {
				return nil, fmt.Errorf("tc: download %s: %w", redact(u), err)
			}
			// Ask for gzip ourselves so the transport leaves decoding to
			// Download whether or not the server was asked.
			req.Header.Set("Accept-Encoding", "gzip")
			return req, nil
		})
		if err != nil {
			var se *sendError
			if errors.As(err, &se) {
				return nil, true, fmt.Errorf("tc: download %s: %w", redact(u), attemptError(ctx, actx, withoutURL(se.err)))
			}
			return nil, false, err
		}
		switch resp.StatusCode {
		case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
			http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
			loc := resp.Header.Get("Location")
			drain(resp.Body)
			if loc == "" {
				return nil, false, fmt.Errorf("tc: download %s: %d without Location", redact(u), resp.StatusCode)
			}
			if hop >= maxRedirects {
				return nil, false, fmt.Errorf("tc: download %s: more than %d redirects", redact(u), maxRedirects)
			}
			next, err := u.Parse(loc)
			if err != nil {
				return nil, false, fmt.Errorf("tc: download %s: bad Location %q: %w", redact(u), loc, err)
			}
			u = next
			continue
		}
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, errorBodyLimit))
			drain(resp.Body)
			return nil, resp.StatusCode >= 500, newAPIError(http.MethodGet, redact(u), resp.StatusCode, b)
		}
		return resp, false, nil
	}
}

// sameOrigin reports whether a and b have the same scheme, host and port.
func sameOrigin(a, b *url.URL) bool {
	if !strings.EqualFold(a.Scheme, b.Scheme) {
		return false
	}
	ah, ap, aerr := hostPort(a)
	bh, bp, berr := hostPort(b)
	return aerr == nil && berr == nil && ap == bp && strings.EqualFold(ah, bh)
}

// redact drops the query string, which for presigned storage URLs holds
// signatures that must not end up in logs.
func redact(u *url.URL) string {
	cp := *u
	cp.RawQuery, cp.ForceQuery, cp.User = "", false, nil
	return cp.String()
}

// drain discards (a bounded amount of) what is left of body and closes it,
// so the connection can be reused.
func drain(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, errorBodyLimit))
	_ = body.Close()
}

// PutArtifact uploads size bytes to a presigned putURL (from an s3
// CreateArtifact answer) with a plain, unsigned PUT carrying Content-Type,
// Content-Length and, when contentEncoding is not empty, Content-Encoding.
// open is called once per attempt, with a context derived from ctx, and
// must return the body from its start; PutArtifact closes what it returns.
// 5xx answers, network errors (a connection dropped mid-body included) and
// attempts that stall (Config.StallTimeout) are retried like Request; only
// a 2xx answer is success.
func (c *Client) PutArtifact(ctx context.Context, putURL string, open func(context.Context) (io.ReadCloser, error), size int64, contentType, contentEncoding string) error {
	h := http.Header{}
	h.Set("Content-Type", contentType)
	if contentEncoding != "" {
		h.Set("Content-Encoding", contentEncoding)
	}
	return c.put(ctx, putURL, open, size, h)
}

// put PUTs size bytes from open to the presigned putURL with header, no
// Authorization, retrying like Request. Each attempt opens the body afresh
// and is aborted when it moves no byte for the stall timeout (the wait for
// the answer after the last byte included); a connection that drops
// mid-body is retried from the start.
func (c *Client) put(ctx context.Context, putURL string, open func(context.Context) (io.ReadCloser, error), size int64, header http.Header) error {
	u, err := url.Parse(putURL)
	if err != nil {
		return fmt.Errorf("tc: put artifact: bad URL: %w", withoutURL(err))
	}
	where := redact(u)
	return c.retry(ctx, func() (bool, error) {
		actx, wd := c.stallGuard(ctx)
		defer wd.stop()
		body, err := open(actx)
		if err != nil {
			return false, fmt.Errorf("tc: put %s: open body: %w", where, err)
		}
		req, err := http.NewRequestWithContext(actx, http.MethodPut, putURL, &progressBody{rc: body, wd: wd})
		if err != nil {
			body.Close()
			return false, fmt.Errorf("tc: put %s: %w", where, err)
		}
		req.ContentLength = size
		if size == 0 {
			req.Body = http.NoBody
			body.Close()
		}
		for k, v := range header {
			req.Header[k] = append([]string(nil), v...)
		}
		wd.arm()
		resp, err := c.http.Do(req) // Do closes req.Body
		if err != nil {
			return true, fmt.Errorf("tc: put %s: %w", where, attemptError(ctx, actx, withoutURL(err)))
		}
		defer drain(resp.Body)
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, errorBodyLimit))
			return resp.StatusCode >= 500, newAPIError(http.MethodPut, where, resp.StatusCode, b)
		}
		return false, nil
	})
}

// withoutURL unwraps a *url.Error, whose text repeats the full URL
// (including any presigned query), keeping the underlying cause.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		return ue.Err
	}
	return err
}
