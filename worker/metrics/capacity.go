package metrics

import (
	"sync"
	"time"
)

// Slots follows how many of the worker's task slots are busy over time,
// for the capacity point's slot-seconds and efficiency. Its methods may be
// called concurrently.
type Slots struct {
	mu      sync.Mutex
	total   int
	running int
	started time.Time
	last    time.Time
	// busy and idle are slot-seconds since the last Point.
	busy, idle float64
}

// NewSlots starts following total slots, none busy, at start (the
// worker's start: the efficiency's uptime counts from it).
func NewSlots(total int, start time.Time) *Slots {
	return &Slots{total: total, started: start, last: start}
}

// advance accounts for the time up to at. Hold s.mu.
func (s *Slots) advance(at time.Time) {
	if d := at.Sub(s.last).Seconds(); d > 0 {
		busy := min(s.running, s.total)
		s.busy += float64(busy) * d
		s.idle += float64(s.total-busy) * d
		s.last = at
	}
}

// Add changes the number of busy slots by delta (a run claimed: +1,
// resolved: -1) at at.
func (s *Slots) Add(delta int, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance(at)
	s.running = max(s.running+delta, 0)
}

// Set makes running the number of busy slots from at on (the registry's
// count, which corrects a run whose resolution was never seen).
func (s *Slots) Set(running int, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance(at)
	s.running = max(running, 0)
}

// Point writes a capacity point at at: running, total and idle slots now;
// busySlotSeconds and idleSlotSeconds since the previous point (their sum
// is total × the seconds between the two); uptimeSeconds since start;
// totalRunSeconds, runTime in seconds (claim to resolution of every run
// resolved so far, see [Runs.RunTime]); and, once the worker has been up
// a while, efficiency: runTime / (total × uptime) × 100, docker-worker's
// total-efficiency.
func (s *Slots) Point(a Adder, runTime time.Duration, at time.Time) {
	s.mu.Lock()
	s.advance(at)
	running, total := s.running, s.total
	busy, idle := s.busy, s.idle
	s.busy, s.idle = 0, 0
	uptime := at.Sub(s.started)
	s.mu.Unlock()
	f := map[string]any{
		"running": running, "total": total, "idle": max(total-running, 0),
		"busySlotSeconds": busy, "idleSlotSeconds": idle,
		"uptimeSeconds": uptime.Seconds(), "totalRunSeconds": runTime.Seconds(),
	}
	if total > 0 && uptime > 0 {
		f["efficiency"] = runTime.Seconds() / (float64(total) * uptime.Seconds()) * 100
	}
	a.Add(MeasurementCapacity, nil, f, at)
}
