package worker

import (
	"context"
	"strings"
	"sync"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/worker/taskerr"
)

// hooks are what extensions registered in Init. They are only appended to
// before the first claim, so they are read without a lock afterwards.
type hooks struct {
	beforeClaim []features.BeforeClaimHook
	afterClaim  []features.AfterClaimHook
	start       []features.StartHook
	observers   []features.Observer
}

// allow asks every before-claim hook how many of want tasks may be claimed
// and returns the smallest allowance with the reasons of those that lowered
// it.
func (h *hooks) allow(ctx context.Context, want int) (int, string) {
	n := want
	var reasons []string
	for _, hook := range h.beforeClaim {
		a, reason := hook(ctx, want)
		if a < want {
			if reason == "" {
				reason = "no reason given"
			}
			reasons = append(reasons, reason)
		}
		n = min(n, max(a, 0))
	}
	return n, strings.Join(reasons, "; ")
}

func (h *hooks) claimed(ctx context.Context, ref features.RunRef) {
	for _, hook := range h.afterClaim {
		hook(ctx, ref)
	}
}

func (h *hooks) emit(ev features.Event) {
	for _, o := range h.observers {
		o.RunEvent(ev)
	}
}

// emitWorker tells the observers that want them about a worker event.
func (h *hooks) emitWorker(ev features.WorkerEvent) {
	for _, o := range h.observers {
		if wo, ok := o.(features.WorkerObserver); ok {
			wo.WorkerEvent(ev)
		}
	}
}

// hostView is the worker as extensions see it during Init.
type hostView struct {
	w      *Worker
	sealed bool
}

var _ features.Host = (*hostView)(nil)

func (h *hostView) register(fn func()) {
	if h.sealed {
		panic("worker: hooks can only be registered from Init")
	}
	fn()
}

func (h *hostView) BeforeClaim(f features.BeforeClaimHook) {
	h.register(func() { h.w.hooks.beforeClaim = append(h.w.hooks.beforeClaim, f) })
}

func (h *hostView) AfterClaim(f features.AfterClaimHook) {
	h.register(func() { h.w.hooks.afterClaim = append(h.w.hooks.afterClaim, f) })
}

func (h *hostView) BeforeFirstClaim(f features.StartHook) {
	h.register(func() { h.w.hooks.start = append(h.w.hooks.start, f) })
}

func (h *hostView) Observe(o features.Observer) {
	h.register(func() { h.w.hooks.observers = append(h.w.hooks.observers, o) })
}

func (h *hostView) Runs() features.Runs { return h.w.runs }

// registry holds the runs in progress, by task and run ID.
type registry struct {
	mu   sync.Mutex
	runs map[features.RunRef]*run
}

var _ features.Runs = (*registry)(nil)

func newRegistry() *registry { return &registry{runs: map[features.RunRef]*run{}} }

func (g *registry) add(r *run) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.runs[r.ref()] = r
}

func (g *registry) remove(r *run) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.runs, r.ref())
}

// Cancel implements features.Runs.
func (g *registry) Cancel(taskID string, runID int, cause error) bool {
	g.mu.Lock()
	r, ok := g.runs[features.RunRef{TaskID: taskID, RunID: runID}]
	g.mu.Unlock()
	if !ok {
		return false
	}
	r.cancel(taskerr.Canceled(cause))
	return true
}

// List implements features.Runs.
func (g *registry) List() []features.RunRef {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]features.RunRef, 0, len(g.runs))
	for ref := range g.runs {
		out = append(out, ref)
	}
	return out
}
