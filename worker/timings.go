package worker

import (
	"strconv"
	"strings"
)

// TimingsLinePrefix starts the task log line, just before the footer, with
// the run's phase durations so far: "<phase>=<ms>" pairs separated by
// spaces, in the order the phases ended, each measured from the previous
// phase's end (the first from the claim), as the "task timings" worker log
// record. `docker-worker task timings` reads it back.
const TimingsLinePrefix = "Task timings (ms): "

// Steps of a run after its last features phase, in the timings record:
// the resolution reported, then the task container removed (after the
// resolution, off the task's critical path).
const (
	phaseResolved = "resolved"
	phaseRemoved  = "removed"
)

// timingsLine is the task log line of the run's phases so far.
func (r *run) timingsLine() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	b.WriteString(TimingsLinePrefix)
	prev := r.start
	for i, m := range r.marks {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(m.phase)
		b.WriteByte('=')
		b.WriteString(strconv.FormatFloat(m.at.Sub(prev).Seconds()*1000, 'f', 1, 64))
		prev = m.at
	}
	return b.String()
}
