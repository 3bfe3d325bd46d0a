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
// body is un-gzipped. Failures before any byte reaches w are retried like
// Request; a failure while copying is not, since w already holds part of the
// body.
func (c *Client) Download(ctx context.Context, rawURL string, w io.Writer) (contentType string, err error) {
	start, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("tc: download %s: %w", rawURL, err)
	}
	var resp *http.Response
	if err := c.retry(ctx, func() (bool, error) {
		r, retry, err := c.follow(ctx, start)
		resp = r
		return retry, err
	}); err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body := io.Reader(resp.Body)
	if strings.EqualFold(strings.TrimSpace(resp.Header.Get("Content-Encoding")), "gzip") {
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			return "", fmt.Errorf("tc: download %s: gzip: %w", redact(resp.Request.URL), err)
		}
		defer zr.Close()
		body = zr
	}
	if _, err := io.Copy(w, body); err != nil {
		return "", fmt.Errorf("tc: download %s: %w", redact(resp.Request.URL), err)
	}
	return resp.Header.Get("Content-Type"), nil
}

// follow GETs u and follows redirects by hand, so that only requests to the
// root URL's origin are signed. It returns the final 2xx response, or an
// error and whether retrying may help.
func (c *Client) follow(ctx context.Context, u *url.URL) (*http.Response, bool, error) {
	hc := *c.http
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	root, _ := url.Parse(c.rootURL)
	for hop := 0; ; hop++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, false, fmt.Errorf("tc: download %s: %w", redact(u), err)
		}
		// Ask for gzip ourselves so the transport leaves decoding to Download
		// whether or not the server was asked.
		req.Header.Set("Accept-Encoding", "gzip")
		if root != nil && sameOrigin(u, root) {
			if err := c.sign(req); err != nil {
				return nil, false, err
			}
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, true, fmt.Errorf("tc: download %s: %w", redact(u), withoutURL(err))
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
// open is called once per attempt, with ctx, and must return the body from
// its start; PutArtifact closes what it returns. 5xx answers and network
// errors are retried like Request; only a 2xx answer is success.
func (c *Client) PutArtifact(ctx context.Context, putURL string, open func(context.Context) (io.ReadCloser, error), size int64, contentType, contentEncoding string) error {
	h := http.Header{}
	h.Set("Content-Type", contentType)
	if contentEncoding != "" {
		h.Set("Content-Encoding", contentEncoding)
	}
	return c.put(ctx, putURL, open, size, h)
}

// put PUTs size bytes from open to the presigned putURL with header, no
// Authorization, retrying like Request.
func (c *Client) put(ctx context.Context, putURL string, open func(context.Context) (io.ReadCloser, error), size int64, header http.Header) error {
	u, err := url.Parse(putURL)
	if err != nil {
		return fmt.Errorf("tc: put artifact: bad URL: %w", withoutURL(err))
	}
	where := redact(u)
	return c.retry(ctx, func() (bool, error) {
		body, err := open(ctx)
		if err != nil {
			return false, fmt.Errorf("tc: put %s: open body: %w", where, err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, putURL, body)
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
		resp, err := c.http.Do(req) // Do closes req.Body
		if err != nil {
			return true, fmt.Errorf("tc: put %s: %w", where, withoutURL(err))
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
