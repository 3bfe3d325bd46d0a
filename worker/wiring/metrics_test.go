package wiring

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

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

// The worker reports claim errors and recoveries only in its log; the
// handler in front of the worker's logger turns those records into points
// and passes every record on at the next handler's level.
func TestMetricsLogHandler(t *testing.T) {
	var out bytes.Buffer
	next := slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelWarn})
	rec := &recordingAdder{}
	log := slog.New(&metricsLogHandler{next: next, sink: rec}).With("component", "worker")

	log.Error(logClaimError, "error", fmt.Errorf("claimWork: %w", &tc.APIError{StatusCode: 503, Method: "POST", URL: "http://q/claim-work"}), "retryIn", time.Second)
	log.Error(logClaimError, "error", errors.New("dial tcp 127.0.0.1:1: connection refused"))
	log.Error(logCredentialsRejected+": check taskcluster.clientId", "attempts", 3, "error", &tc.APIError{StatusCode: 401})
	log.Info(logRecovered, "containersRemoved", 2, "runsResolved", 1, "runsExpired", 0, "runsFailed", 0, "ms", int64(1500))
	log.Info("claimed task", "taskId", "T")

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
	text := out.String()
	if strings.Count(text, "level=ERROR") != 3 || strings.Contains(text, "level=INFO") || !strings.Contains(text, "component=worker") {
		t.Errorf("the next handler got:\n%s", text)
	}
}
