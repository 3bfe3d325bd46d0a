package docker

import (
	"math"
	"testing"
	"time"
)

// delay is the wait p asks for after failed attempt n when the random
// source returns u.
func delay(p PullPolicy, n int, u float64) time.Duration {
	b := p.backoff()
	b.Rand = func() float64 { return u }
	return b.Delay(n)
}

func TestPullPolicyDelay(t *testing.T) {
	base := 15 * time.Second
	tests := []struct {
		name string
		p    PullPolicy
		n    int
		u    float64
		want time.Duration
	}{
		{"first retry, middle of jitter", PullPolicy{BaseDelay: base, Randomization: 0.25}, 1, 0.5, base},
		{"third retry doubles twice", PullPolicy{BaseDelay: base, Randomization: 0.25}, 3, 0.5, 4 * base},
		{"low end of jitter", PullPolicy{BaseDelay: base, Randomization: 0.25}, 1, 0, base * 3 / 4},
		{"high end of jitter", PullPolicy{BaseDelay: base, Randomization: 0.25}, 2, 1, 2 * base * 5 / 4},
		{"no jitter", PullPolicy{BaseDelay: time.Second}, 4, 0.9, 8 * time.Second},
		{"jitter above 1 is clamped", PullPolicy{BaseDelay: time.Second, Randomization: 3}, 1, 0, 0},
		{"negative jitter is clamped", PullPolicy{BaseDelay: time.Second, Randomization: -1}, 1, 0, time.Second},
		{"attempt below 1 counts as 1", PullPolicy{BaseDelay: time.Second}, 0, 0.5, time.Second},
		{"huge attempt saturates", PullPolicy{BaseDelay: time.Second}, 200, 0.5, time.Duration(math.MaxInt64)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := delay(tc.p, tc.n, tc.u); got != tc.want {
				t.Errorf("delay(%d, %v) = %v, want %v", tc.n, tc.u, got, tc.want)
			}
		})
	}
}

func TestPullPolicyDelayStaysInRange(t *testing.T) {
	p := DefaultPullPolicy()
	for n := 1; n <= p.Attempts; n++ {
		nominal := float64(p.BaseDelay) * math.Pow(2, float64(n-1))
		lo, hi := time.Duration(nominal*0.75), time.Duration(nominal*1.25)
		for _, u := range []float64{0, 0.1, 0.5, 0.999999} {
			if got := delay(p, n, u); got < lo || got > hi {
				t.Errorf("delay(%d, %v) = %v, want within [%v, %v]", n, u, got, lo, hi)
			}
		}
	}
}

func TestDefaultPullPolicy(t *testing.T) {
	want := PullPolicy{Attempts: 5, BaseDelay: 15 * time.Second, Randomization: 0.25}
	if got := DefaultPullPolicy(); got != want {
		t.Errorf("DefaultPullPolicy() = %+v, want %+v", got, want)
	}
}

func TestNormalizeRef(t *testing.T) {
	const digest = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct{ in, want string }{
		{"busybox", "busybox:latest"},
		{"busybox:1.36", "busybox:1.36"},
		{"docker.io/library/busybox", "busybox:latest"},
		{"127.0.0.1:5000/nope/nothing:1", "127.0.0.1:5000/nope/nothing:1"},
		{"127.0.0.1:5000/x/y", "127.0.0.1:5000/x/y:latest"},
		{"x/y@sha256:" + digest, "x/y@sha256:" + digest},
		{"busybox@sha256:" + digest, "busybox@sha256:" + digest},
		{"docker.io/library/busybox@sha256:" + digest, "busybox@sha256:" + digest},
		{"127.0.0.1:5000/x/y:1@sha256:" + digest, "127.0.0.1:5000/x/y@sha256:" + digest},
	}
	for _, tc := range tests {
		got, err := normalizeRef(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("normalizeRef(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := normalizeRef("Not A Ref"); err == nil {
		t.Error("normalizeRef accepted an invalid reference")
	}
}
