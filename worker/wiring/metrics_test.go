package wiring

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

type recordedPoint struct {
	measurement string
	tags        map[string]string
	fields      map[string]any
}

type recordingAdder struct {
	mu     sync.Mutex
	points []recordedPoint
}

func (r *recordingAdder) Add(m string, tags map[string]string, fields map[string]any, _ time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.points = append(r.points, recordedPoint{m, tags, fields})
}

// The worker's claim errors and recoveries (worker events) become
// claim_error and recovery points.
func TestMetricsWorkerEvents(t *testing.T) {
	rec := &recordingAdder{}
	e := &metricsExtension{points: rec}
	at := time.Now()
	for _, err := range []error{
		fmt.Errorf("claimWork: %w", &tc.APIError{StatusCode: 503, Method: "POST", URL: "http://q/claim-work"}),
		errors.New("dial tcp 127.0.0.1:1: connection refused"),
		&tc.APIError{StatusCode: 401},
	} {
		e.WorkerEvent(features.WorkerEvent{Kind: features.ClaimFailed, At: at, Err: err})
	}
	e.WorkerEvent(features.WorkerEvent{Kind: features.Recovered, At: at, Recovery: features.Recovery{
		ContainersRemoved: 2, RunsResolved: 1, Took: 1500 * time.Millisecond}})

	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.points) != 4 {
		t.Fatalf("points: %+v", rec.points)
	}
	for i, code := range []string{"503", "none", "401"} {
		p := rec.points[i]
		if p.measurement != "claim_error" || p.tags["code"] != code || p.fields["count"] != 1 {
			t.Errorf("point %d: %+v, want a claim_error with code %s", i, p, code)
		}
	}
	if msg, _ := rec.points[1].fields["message"].(string); !strings.Contains(msg, "connection refused") {
		t.Errorf("claim error message %q", msg)
	}
	r := rec.points[3]
	if r.measurement != "recovery" || r.fields["containersRemoved"] != 2 || r.fields["runsResolved"] != 1 || r.fields["ms"] != 1500.0 {
		t.Errorf("recovery point %+v", r)
	}
}
