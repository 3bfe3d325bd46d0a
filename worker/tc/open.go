package tc

import (
	"context"
	"fmt"
	"io"
	"net/url"
)

// Body is a download in progress, as the server sent it.
type Body struct {
	io.ReadCloser
	// ContentEncoding is the response's Content-Encoding ("" for none); the
	// body is not decoded.
	ContentEncoding string
	// ContentType is the response's Content-Type.
	ContentType string
	// ContentLength is the body's length as sent, -1 when unknown.
	ContentLength int64
}

// Open GETs rawURL as [Client.Download] does (requests to the root URL's
// origin signed when the client has credentials, redirects followed,
// other hosts sent no Authorization) but tries once and hands back the
// body undecoded, for the caller to stream and close. A non-2xx answer is
// an *APIError. Waiting for the answer, and each Read of the body, is
// bounded by the stall timeout (Config.StallTimeout); a Read that times
// out fails with an error that wraps ErrTimeout. Time between the
// caller's reads does not count.
func (c *Client) Open(ctx context.Context, rawURL string) (*Body, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("tc: download %s: %w", rawURL, err)
	}
	actx, wd := c.stallGuard(ctx)
	wd.arm()
	resp, _, err := c.follow(ctx, actx, u)
	wd.disarm()
	if err != nil {
		wd.stop()
		return nil, err
	}
	return &Body{
		ReadCloser:      &watchedBody{rc: resp.Body, ctx: ctx, act: actx, wd: wd},
		ContentEncoding: resp.Header.Get("Content-Encoding"),
		ContentType:     resp.Header.Get("Content-Type"),
		ContentLength:   resp.ContentLength,
	}, nil
}
