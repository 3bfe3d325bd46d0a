// Package backoff computes the pauses between retries: exponential growth
// from a base delay, an optional cap, and random jitter so that many
// clients failing together do not retry together.
//
// It is the one backoff of the worker, shared by the Taskcluster client
// (worker/tc), image pulls (worker/docker) and the claim loop. It only
// computes delays and waits; callers keep their own retry loops, since
// they differ in what they retry and what they report between attempts.
// It is internal to the worker and imports nothing of it.
package backoff

import (
	"context"
	"math"
	"math/rand/v2"
	"time"
)

// Policy describes the delay after each failed attempt. The zero Policy
// never waits.
//
// The delay after failed attempt n (counting from 1) is
//
//	d = Base × 2^(n−1), capped at Max when Max > 0,
//
// then spread uniformly over [d × (1 − Jitter), d × (1 + Jitter)]. The
// cap applies before the jitter, so delays at the cap keep their spread.
// This is Taskcluster's own client convention (delayFactor,
// randomizationFactor, maxDelay) and docker-worker's for image pulls.
//
// A Policy is a value; it is safe for concurrent use when Rand is.
type Policy struct {
	// Base is the delay after the first failed attempt, before jitter.
	// Zero or negative means no delay at all.
	Base time.Duration
	// Max caps the delay before jitter; zero or negative means no cap.
	Max time.Duration
	// Jitter is the randomization factor, clamped to [0, 1]: 0.25 spreads
	// each delay over ±25 %.
	Jitter float64
	// Rand returns uniformly distributed numbers in [0, 1); values outside
	// are clamped. nil means math/rand/v2.Float64. Tests inject a fixed
	// source to get exact delays.
	Rand func() float64
}

// Delay returns the pause after failed attempt number attempt, counting
// from 1 (values below 1 count as 1). It never overflows: delays too large
// for a time.Duration saturate at the largest one.
func (p Policy) Delay(attempt int) time.Duration {
	if p.Base <= 0 {
		return 0
	}
	attempt = max(attempt, 1)
	d := math.Ldexp(float64(p.Base), min(attempt-1, 1100)) // 2^1100 × 1ns is past any cap
	if p.Max > 0 {
		d = min(d, float64(p.Max))
	}
	d = min(d, math.MaxInt64) // finite, so that a zero jitter factor gives 0
	if j := min(max(p.Jitter, 0), 1); j > 0 {
		rnd := p.Rand
		if rnd == nil {
			rnd = rand.Float64
		}
		u := min(max(rnd(), 0), 1)
		d *= 1 - j + 2*j*u
	}
	if d >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(d)
}

// Wait pauses for d, or until ctx is done, whichever comes first. It
// returns nil after the full pause and ctx's error otherwise (at once when
// ctx is already done, even for a zero d).
func Wait(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
