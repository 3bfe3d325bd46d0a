package interactive

import (
	"path/filepath"
	"sync"
	"testing"
	"time"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestHold(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	h := newHold(filepath.Join(t.TempDir(), "hold"), 10*time.Minute)
	h.now = clk.now
	check := func(step string, want bool) {
		t.Helper()
		h.mu.Lock()
		h.update()
		h.mu.Unlock()
		if got := h.held(); got != want {
			t.Errorf("%s: held %v, want %v", step, got, want)
		}
	}
	h.start(3 * time.Minute)
	check("after start", true)
	clk.add(2 * time.Minute)
	check("within minTime", true)
	h.opened()
	clk.add(time.Hour)
	check("session open past minTime", true)
	h.closed()
	clk.add(9 * time.Minute)
	check("9 minutes after the session", true)
	clk.add(2 * time.Minute)
	check("11 minutes after the session", false)
	h.opened()
	check("new session", true)
	h.closed()
	if err := h.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if h.held() {
		t.Error("held after stop")
	}
}

func TestHoldNoSession(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	h := newHold(filepath.Join(t.TempDir(), "hold"), time.Minute)
	h.now = clk.now
	h.start(0)
	if h.held() {
		t.Error("minTime 0 without sessions: held, want released")
	}
}
