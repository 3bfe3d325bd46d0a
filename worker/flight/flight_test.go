package flight

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
)

type buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Two callers of one key share one run of fn and both see its progress;
// the joiner sees the join line first.
func TestShared(t *testing.T) {
	var g Group[string, int]
	release := make(chan struct{})
	started := make(chan struct{})
	runs := 0
	fn := func(_ context.Context, c *Call[int]) (int, error) {
		runs++
		close(started)
		<-release
		c.Write("progress\n")
		return 42, nil
	}
	var first, second buffer
	var wg sync.WaitGroup
	var r1, r2 int
	wg.Go(func() { r1, _ = g.Do(t.Context(), "k", &first, "joined\n", fn) })
	<-started
	joinedIn := make(chan struct{})
	wg.Go(func() {
		close(joinedIn)
		r2, _ = g.Do(t.Context(), "k", &second, "joined\n", func(context.Context, *Call[int]) (int, error) {
			t.Error("a second run started")
			return 0, nil
		})
	})
	<-joinedIn
	for !strings.Contains(second.String(), "joined") {
		runtime.Gosched() // the joiner registers under the group's lock
	}
	close(release)
	wg.Wait()
	if runs != 1 || r1 != 42 || r2 != 42 {
		t.Errorf("runs %d, results %d %d", runs, r1, r2)
	}
	if first.String() != "progress\n" || second.String() != "joined\nprogress\n" {
		t.Errorf("progress: %q and %q", first.String(), second.String())
	}
}

// A caller whose context ends gets its cause; the work is cancelled once
// the last caller left, and a later caller starts afresh.
func TestAbandoned(t *testing.T) {
	var g Group[string, int]
	cancelled := make(chan struct{})
	ctx, cancel := context.WithCancelCause(t.Context())
	cause := errors.New("gave up")
	var out buffer
	go func() {
		_, err := g.Do(ctx, "k", &out, "", func(fctx context.Context, c *Call[int]) (int, error) {
			cancel(cause)
			<-fctx.Done()
			close(cancelled)
			c.Write("late\n")
			return 0, fctx.Err()
		})
		if !errors.Is(err, cause) {
			t.Errorf("err %v, want the cause", err)
		}
	}()
	<-cancelled
	if got, err := g.Do(t.Context(), "k", &out, "", func(context.Context, *Call[int]) (int, error) { return 7, nil }); got != 7 || err != nil {
		t.Errorf("later caller: %d %v", got, err)
	}
	if strings.Contains(out.String(), "late") {
		t.Error("progress reached a caller that had left")
	}
}
