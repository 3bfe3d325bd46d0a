package backoff

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"
)

// fixed is a random source that always returns u.
func fixed(u float64) func() float64 { return func() float64 { return u } }

func TestDelay(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name    string
		p       Policy
		attempt int
		want    time.Duration
	}{
		{"first retry waits Base", Policy{Base: s}, 1, s},
		{"doubles per attempt", Policy{Base: s}, 4, 8 * s},
		{"attempt below 1 counts as 1", Policy{Base: s}, -3, s},
		{"capped", Policy{Base: s, Max: 5 * s}, 4, 5 * s},
		{"under the cap", Policy{Base: s, Max: 5 * s}, 3, 4 * s},
		{"base above the cap", Policy{Base: time.Minute, Max: 5 * s}, 1, 5 * s},
		{"no base, no delay", Policy{Max: s, Jitter: 0.5, Rand: fixed(1)}, 3, 0},
		{"jitter low end", Policy{Base: 4 * s, Jitter: 0.25, Rand: fixed(0)}, 1, 3 * s},
		{"jitter middle", Policy{Base: 4 * s, Jitter: 0.25, Rand: fixed(0.5)}, 2, 8 * s},
		{"jitter high end", Policy{Base: 4 * s, Jitter: 0.25, Rand: fixed(1)}, 1, 5 * s},
		{"jitter applies after the cap", Policy{Base: s, Max: 4 * s, Jitter: 0.5, Rand: fixed(1)}, 10, 6 * s},
		{"jitter above 1 is clamped", Policy{Base: s, Jitter: 3, Rand: fixed(0)}, 1, 0},
		{"negative jitter is clamped", Policy{Base: s, Jitter: -1, Rand: fixed(0)}, 1, s},
		{"random above 1 is clamped", Policy{Base: s, Jitter: 0.5, Rand: fixed(7)}, 1, 1500 * time.Millisecond},
		{"random below 0 is clamped", Policy{Base: s, Jitter: 0.5, Rand: fixed(-1)}, 1, 500 * time.Millisecond},
		{"huge attempt saturates", Policy{Base: s}, 5000, math.MaxInt64},
		{"huge attempt with full jitter at 0", Policy{Base: s, Jitter: 1, Rand: fixed(0)}, 5000, 0},
		{"huge attempt with jitter saturates", Policy{Base: s, Jitter: 1, Rand: fixed(1)}, 5000, math.MaxInt64},
		{"huge cap", Policy{Base: s, Max: math.MaxInt64}, 200, math.MaxInt64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.Delay(tt.attempt); got != tt.want {
				t.Errorf("Delay(%d) = %v, want %v", tt.attempt, got, tt.want)
			}
		})
	}
}

// Without an injected source the delays stay within the jitter range.
func TestDelayDefaultRandomStaysInRange(t *testing.T) {
	p := Policy{Base: 100 * time.Millisecond, Max: 30 * time.Second, Jitter: 0.25}
	for attempt := 1; attempt <= 12; attempt++ {
		nominal := min(float64(p.Base)*math.Pow(2, float64(attempt-1)), float64(p.Max))
		lo, hi := time.Duration(nominal*0.75), time.Duration(nominal*1.25)
		for range 50 {
			if got := p.Delay(attempt); got < lo || got > hi {
				t.Fatalf("Delay(%d) = %v, want within [%v, %v]", attempt, got, lo, hi)
			}
		}
	}
}

// The random source is consulted once per delay, and only when there is
// jitter.
func TestDelayDrawsOncePerDelay(t *testing.T) {
	calls := 0
	src := func() float64 { calls++; return 0.5 }
	Policy{Base: time.Second, Rand: src}.Delay(3)
	if calls != 0 {
		t.Errorf("no jitter: random source called %d times, want 0", calls)
	}
	Policy{Base: time.Second, Jitter: 0.1, Rand: src}.Delay(3)
	if calls != 1 {
		t.Errorf("with jitter: random source called %d times, want 1", calls)
	}
}

func TestWait(t *testing.T) {
	if err := Wait(t.Context(), 0); err != nil {
		t.Errorf("Wait(0) = %v", err)
	}
	if err := Wait(t.Context(), time.Millisecond); err != nil {
		t.Errorf("Wait(1ms) = %v", err)
	}
	done, cancel := context.WithCancel(t.Context())
	cancel()
	if err := Wait(done, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait(0) on a done context = %v, want context.Canceled", err)
	}
	start := time.Now()
	if err := Wait(done, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait(1h) on a done context = %v, want context.Canceled", err)
	}
	if waited := time.Since(start); waited > time.Minute {
		t.Errorf("Wait on a done context took %v", waited)
	}
}

// A context cancelled during the pause ends it.
func TestWaitCancelledMidway(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- Wait(ctx, time.Hour) }()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Wait = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return after its context was cancelled")
	}
}
