package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.dockerworker.dev/docker-worker/worker/localqueue"
)

// Handler serves api (the queue's handler, which expects full paths) under
// <rootURL path>/api/ and ui (the web page) at the rest of the root URL's
// path, with that path stripped.
func Handler(rootURL string, api, ui http.Handler) http.Handler {
	base := ""
	if u, err := url.Parse(strings.TrimSuffix(rootURL, "/")); err == nil {
		base = u.EscapedPath()
	}
	stripped := http.StripPrefix(base, ui)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.EscapedPath()
		switch {
		case strings.HasPrefix(p, base+"/api/"):
			api.ServeHTTP(w, r)
		case p == base && base != "":
			http.Redirect(w, r, base+"/", http.StatusMovedPermanently)
		case strings.HasPrefix(p, base+"/"):
			stripped.ServeHTTP(w, r)
		default:
			http.NotFound(w, r)
		}
	})
}

// serve serves h on ln and runs the queue's background work until ctx is
// done, as [localqueue.Serve] does for the queue's handler alone.
func serve(ctx context.Context, ln net.Listener, q *localqueue.Queue, h http.Handler, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv := &http.Server{
		Handler:           h,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = q.Run(ctx) })
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	var err error
	select {
	case err = <-errc:
		cancel()
	case <-ctx.Done():
		shutdownCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err = srv.Shutdown(shutdownCtx)
		stop()
		if serveErr := <-errc; !errors.Is(serveErr, http.ErrServerClosed) {
			err = errors.Join(err, serveErr)
		}
	}
	wg.Wait()
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}
