package metrics

import (
	"sync"
	"testing"
	"time"
)

type point struct {
	measurement string
	tags        map[string]string
	fields      map[string]any
	at          time.Time
}

type recorder struct {
	mu     sync.Mutex
	points []point
}

func (r *recorder) Add(m string, tags map[string]string, fields map[string]any, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.points = append(r.points, point{m, tags, fields, at})
}

// Phases add up to the total whatever their order of arrival across
// runs; a repeated phase adds to its duration; a run resolved without a
// seen claim starts at its first event.
func TestRunsPhaseSums(t *testing.T) {
	rec := &recorder{}
	runs := NewRuns(rec)
	t0 := time.Unix(1_700_000_000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	var wg sync.WaitGroup
	for run := range 8 {
		wg.Go(func() {
			runs.Claimed("A", run, at(0))
			runs.Phase("A", run, "image", at(10+run))
			runs.Phase("A", run, "created", at(20+run))
			runs.Phase("A", run, "created", at(25+run))
			runs.FirstOutput("A", run, at(26+run))
			runs.FirstOutput("A", run, at(27+run))
			runs.Resolved("A", run, "failed", "", at(40+2*run))
		})
	}
	wg.Wait()
	runs.Phase("B", 0, "logUploaded", at(100))
	runs.Resolved("B", 0, "exception", "malformed-payload", at(103))
	if runs.Open() != 0 {
		t.Errorf("%d runs still open", runs.Open())
	}
	if len(rec.points) != 9 {
		t.Fatalf("%d points", len(rec.points))
	}
	for _, p := range rec.points {
		f := p.fields
		if f["taskId"] == "B" {
			if f["logUploadedMs"] != 0.0 || f["resolvedMs"] != 3.0 || f["totalMs"] != 3.0 || p.tags["reason"] != "malformed-payload" {
				t.Errorf("run B: %+v", p)
			}
			continue
		}
		run := f["runId"].(int)
		sum := f["imageMs"].(float64) + f["createdMs"].(float64) + f["resolvedMs"].(float64)
		if f["createdMs"] != 15.0 || f["createdAtMs"] != float64(25+run) || f["firstOutputAtMs"] != float64(26+run) ||
			sum != f["totalMs"] || f["totalMs"] != float64(40+2*run) || p.tags["resolution"] != "failed" || !p.at.Equal(at(40+2*run)) {
			t.Errorf("run %d: %+v", run, p)
		}
	}
}
