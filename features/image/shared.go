package image

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"go.dockerworker.dev/docker-worker/worker/tasklog"
)

// group shares one load of an artifact image between the tasks that need
// it at the same time: the first starts it, later ones wait for it, and
// every one of them receives its progress lines. The load is abandoned
// only when every waiting task has given up.
type group struct {
	mu    sync.Mutex
	calls map[string]*call // in progress, by image reference
}

// loaded is what a load produced.
type loaded struct {
	id     string // image ID
	sha256 string // hex sha256 of the artifact
	cached bool   // found in Docker, nothing loaded
}

// call is one load in progress.
type call struct {
	done    chan struct{} // closed once res and err are set
	res     loaded
	err     error
	cancel  context.CancelFunc
	waiters int // guarded by group.mu

	outMu sync.Mutex
	outs  map[*waiter]io.Writer // guarded by outMu
}

type waiter struct{ _ byte }

// printf writes one information line to every waiting task's log.
func (c *call) printf(format string, args ...any) {
	line := tasklog.InfoLine(time.Now(), fmt.Sprintf(format, args...))
	c.outMu.Lock()
	defer c.outMu.Unlock()
	for _, w := range c.outs {
		io.WriteString(w, line)
	}
}

// do runs fn for key unless a call for key is in progress, and waits for
// the result. fn runs with a context that is cancelled once every caller
// has left; out receives the call's progress lines while the caller waits,
// after joinLine when the caller joins a call another started.
func (g *group) do(ctx context.Context, key string, out io.Writer, joinLine string, fn func(ctx context.Context, c *call) (loaded, error)) (loaded, error) {
	w := &waiter{}
	g.mu.Lock()
	if g.calls == nil {
		g.calls = map[string]*call{}
	}
	c, joined := g.calls[key]
	if !joined {
		c = &call{done: make(chan struct{}), outs: map[*waiter]io.Writer{}}
		g.calls[key] = c
	}
	c.waiters++
	c.outMu.Lock()
	if joined {
		io.WriteString(out, tasklog.InfoLine(time.Now(), joinLine))
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
		return loaded{}, context.Cause(ctx)
	}
}

// leave unregisters a waiter; the last one to leave an unfinished call
// cancels it, so that a later caller starts afresh.
func (g *group) leave(key string, c *call, w *waiter) {
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
