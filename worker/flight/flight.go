// Package flight shares one piece of slow work (an image pull, an image
// download) between the callers that need it at the same time: the first
// caller starts it, later ones wait for it, and every waiting caller
// receives its progress lines. The work is abandoned only when every
// caller has given up. Used by worker/docker and the image feature.
package flight

import (
	"context"
	"io"
	"sync"
)

// Group holds the calls in progress, by key. The zero value is ready.
type Group[K comparable, V any] struct {
	mu    sync.Mutex
	calls map[K]*Call[V]
}

// Call is one piece of work in progress.
type Call[V any] struct {
	done    chan struct{} // closed once res and err are set
	res     V
	err     error
	cancel  context.CancelFunc
	waiters int // guarded by Group.mu

	outMu sync.Mutex
	outs  map[*waiter]io.Writer // guarded by outMu
}

type waiter struct{ _ byte }

// Write writes line, as it is, to every waiting caller's progress writer.
// Progress is best effort: write errors are ignored.
func (c *Call[V]) Write(line string) {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	for _, w := range c.outs {
		_, _ = io.WriteString(w, line)
	}
}

// Do runs fn for key unless a call for key is in progress, and waits for
// the result. out receives the call's progress while the caller waits
// (after joinLine, when the caller joins a call another started); fn
// starts only once the first caller's out is registered, so that it sees
// the first line. fn's context is cancelled once every caller has left.
// When ctx is done first, Do returns context.Cause(ctx). Writes to out stop
// before Do returns.
func (g *Group[K, V]) Do(ctx context.Context, key K, out io.Writer, joinLine string, fn func(ctx context.Context, c *Call[V]) (V, error)) (V, error) {
	w := &waiter{}
	g.mu.Lock()
	if g.calls == nil {
		g.calls = map[K]*Call[V]{}
	}
	c, joined := g.calls[key]
	if !joined {
		c = &Call[V]{done: make(chan struct{}), outs: map[*waiter]io.Writer{}}
		g.calls[key] = c
	}
	c.waiters++
	c.outMu.Lock()
	if joined {
		_, _ = io.WriteString(out, joinLine)
	}
	c.outs[w] = out
	c.outMu.Unlock()
	if !joined {
		cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		c.cancel = cancel
		go func() {
			res, err := fn(cctx, c)
			g.mu.Lock()
			if g.calls[key] == c {
				delete(g.calls, key)
			}
			g.mu.Unlock()
			c.res, c.err = res, err
			cancel()
			close(c.done)
		}()
	}
	g.mu.Unlock()

	select {
	case <-c.done:
		g.leave(key, c, w)
		return c.res, c.err
	case <-ctx.Done():
		g.leave(key, c, w)
		var zero V
		return zero, context.Cause(ctx)
	}
}

// leave unregisters a waiter; the last one to leave an unfinished call
// cancels it, so that a later caller starts afresh.
func (g *Group[K, V]) leave(key K, c *Call[V], w *waiter) {
	c.outMu.Lock()
	delete(c.outs, w)
	c.outMu.Unlock()
	g.mu.Lock()
	defer g.mu.Unlock()
	c.waiters--
	if c.waiters > 0 {
		return
	}
	c.cancel()
	if g.calls[key] == c {
		delete(g.calls, key)
	}
}

// Waiters is how many callers wait on the call for key (0 when none is in
// progress).
func (g *Group[K, V]) Waiters(key K) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c := g.calls[key]; c != nil {
		return c.waiters
	}
	return 0
}
