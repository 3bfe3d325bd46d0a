package metrics

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// byMeasurement returns the recorded points of measurement m.
func (r *recorder) byMeasurement(m string) []point {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []point
	for _, p := range r.points {
		if p.measurement == m {
			out = append(out, p)
		}
	}
	return out
}

// Uploads before the artifacts phase are the run's artifacts, those after
// its logs; each kind is one point at the resolution, failed uploads
// counted but not their bytes. A run without uploads has no artifacts
// point.
func TestRunsUploads(t *testing.T) {
	rec := &recorder{}
	runs := NewRuns(rec)
	t0 := time.Unix(1_700_000_000, 0)
	runs.Claimed("A", 0, t0)
	runs.Upload("A", 0, 1000, 200*time.Millisecond, false, t0)
	runs.Upload("A", 0, 3000, 300*time.Millisecond, false, t0)
	runs.Upload("A", 0, 5000, 500*time.Millisecond, true, t0)
	runs.Phase("A", 0, "artifacts", t0.Add(time.Second))
	runs.Upload("A", 0, 700, 100*time.Millisecond, false, t0)
	runs.Resolved("A", 0, "completed", "", t0.Add(2*time.Second))
	runs.Claimed("B", 0, t0)
	runs.Resolved("B", 0, "completed", "", t0.Add(time.Second))
	runs.Upload("C", 0, 1, time.Millisecond, false, t0) // never claimed here
	if runs.Open() != 0 {
		t.Errorf("an upload of a run not followed opened it")
	}

	got := map[string]map[string]any{}
	for _, p := range rec.byMeasurement(MeasurementArtifacts) {
		if p.fields["taskId"] != "A" {
			t.Errorf("artifacts point of a run without uploads: %+v", p)
		}
		got[p.tags["kind"]] = p.fields
	}
	a, l := got["artifacts"], got["logs"]
	if a == nil || a["count"] != 3 || a["failed"] != 1 || a["bytes"] != int64(4000) || a["ms"] != 1000.0 || a["bytesPerSecond"] != 4000.0 {
		t.Errorf("artifacts: %+v", a)
	}
	if l == nil || l["count"] != 1 || l["failed"] != 0 || l["bytes"] != int64(700) || l["ms"] != 100.0 || l["bytesPerSecond"] != 7000.0 {
		t.Errorf("logs: %+v", l)
	}
	if got := runs.RunTime(); got != 3*time.Second {
		t.Errorf("run time %s, want 3s (2s + 1s)", got)
	}
}

// Busy and idle slot-seconds add up to the slots times the time between
// two points, and the efficiency is docker-worker's: run time over
// capacity times uptime.
func TestSlots(t *testing.T) {
	rec := &recorder{}
	t0 := time.Unix(1_700_000_000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	s := NewSlots(4, t0)
	s.Add(1, at(10)) // 1 busy from 10 s
	s.Add(1, at(20)) // 2 busy from 20 s
	s.Add(-1, at(30))
	s.Point(rec, 25*time.Second, at(40))
	s.Set(3, at(50)) // the registry says 3
	s.Add(-5, at(55))
	s.Point(rec, 100*time.Second, at(60))

	ps := rec.byMeasurement(MeasurementCapacity)
	if len(ps) != 2 {
		t.Fatalf("%d capacity points", len(ps))
	}
	first, second := ps[0].fields, ps[1].fields
	// 0-10: 0 busy; 10-20: 1; 20-30: 2; 30-40: 1 → 40 slot-seconds busy.
	if first["busySlotSeconds"] != 40.0 || first["idleSlotSeconds"] != 120.0 || first["running"] != 1 || first["idle"] != 3 {
		t.Errorf("first point %+v", first)
	}
	if first["efficiency"] != 25.0/(4*40)*100 || first["uptimeSeconds"] != 40.0 || first["totalRunSeconds"] != 25.0 {
		t.Errorf("first point efficiency %+v", first)
	}
	// 40-50: 1 busy; 50-55: 3; 55-60: 0 (never below zero).
	if second["busySlotSeconds"] != 25.0 || second["idleSlotSeconds"] != 55.0 || second["running"] != 0 || second["total"] != 4 {
		t.Errorf("second point %+v", second)
	}
	for _, p := range ps {
		if sum := p.fields["busySlotSeconds"].(float64) + p.fields["idleSlotSeconds"].(float64); sum != 4*20 && sum != 4*40 {
			t.Errorf("slot-seconds add up to %v", sum)
		}
	}
}

// A worker point right at the start has no efficiency (no uptime yet).
func TestSlotsAtStart(t *testing.T) {
	rec := &recorder{}
	t0 := time.Unix(1_700_000_000, 0)
	NewSlots(2, t0).Point(rec, 0, t0)
	f := rec.points[0].fields
	if _, ok := f["efficiency"]; ok || f["idle"] != 2 || f["idleSlotSeconds"] != 0.0 {
		t.Errorf("%+v", f)
	}
}

func TestRunPoints(t *testing.T) {
	rec := &recorder{}
	t0 := time.Unix(1_700_000_000, 0)
	Image(rec, "T", 1, "task-image", false, false, 4<<20, 2*time.Second, t0)
	Image(rec, "T", 2, "pull", true, false, 0, 3*time.Millisecond, t0)
	Cache(rec, "T", 1, "vcs", true, t0)
	Cache(rec, "T", 2, "vcs", false, t0)
	QueueError(rec, "queue", "reclaimTask", 409, "conflict", t0)
	QueueError(rec, "queue", "claimWork", 0, "connection refused", t0)
	SpotNotice(rec, "terminate", t0.Add(2*time.Minute), t0)
	SpotNotice(rec, "stop", time.Time{}, t0)

	img := rec.byMeasurement(MeasurementImage)
	if img[0].tags["kind"] != "task-image" || img[0].tags["cached"] != "false" || img[0].tags["shared"] != "false" ||
		img[0].fields["bytesPerSecond"] != float64(2<<20) || img[0].fields["ms"] != 2000.0 {
		t.Errorf("image %+v", img[0])
	}
	if _, ok := img[1].fields["bytesPerSecond"]; ok || img[1].tags["cached"] != "true" {
		t.Errorf("cached image %+v", img[1])
	}
	c := rec.byMeasurement(MeasurementCache)
	if c[0].tags["result"] != "hit" || c[1].tags["result"] != "miss" || c[0].tags["cache"] != "vcs" || c[0].fields["count"] != 1 {
		t.Errorf("cache %+v", c)
	}
	q := rec.byMeasurement(MeasurementQueueError)
	if q[0].tags["code"] != "409" || q[0].tags["method"] != "reclaimTask" || q[0].tags["service"] != "queue" || q[1].tags["code"] != "none" {
		t.Errorf("queue errors %+v", q)
	}
	s := rec.byMeasurement(MeasurementSpotNotice)
	if s[0].fields["inSeconds"] != 120.0 || s[0].tags["action"] != "terminate" {
		t.Errorf("spot %+v", s[0])
	}
	if _, ok := s[1].fields["inSeconds"]; ok {
		t.Errorf("spot without a time %+v", s[1])
	}
}

// The host is read from /proc and statfs; CPU is the busy share since the
// previous sample.
func TestHostSample(t *testing.T) {
	proc := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(proc, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("stat", "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n")
	write("meminfo", "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    400 kB\n")
	write("uptime", "1234.50 99.00\n")
	h := &Host{Proc: proc, Volume: t.TempDir()}
	s, err := h.Sample()
	if err != nil {
		t.Fatal(err)
	}
	if !s.CPURead || s.CPUPercent != 20 || s.MemTotal != 1000*1024 || s.MemFree != 400*1024 || s.MemUsed != 600*1024 ||
		s.Uptime != 1234500*time.Millisecond {
		t.Errorf("first sample %+v", s)
	}
	if s.DiskTotal == 0 || s.DiskFree > s.DiskTotal || s.DiskUsed > s.DiskTotal {
		t.Errorf("disk %+v", s)
	}
	// 300 more jiffies busy, 100 more idle: 75 %.
	write("stat", "cpu  300 0 200 750 150 0 0 0 0 0\n")
	if s, err = h.Sample(); err != nil || s.CPUPercent != 75 {
		t.Errorf("second sample %+v, %v", s, err)
	}

	rec := &recorder{}
	HostPoint(rec, s, time.Unix(1_700_000_000, 0))
	for _, k := range []string{"cpuPercent", "memTotal", "memFree", "memUsed", "diskTotal", "diskFree", "diskUsed", "uptimeSeconds"} {
		if _, ok := rec.points[0].fields[k]; !ok {
			t.Errorf("host point lacks %s: %+v", k, rec.points[0].fields)
		}
	}
}

// What cannot be read is an error and is left out of the point; the rest
// is still written.
func TestHostSamplePartial(t *testing.T) {
	proc := t.TempDir()
	os.WriteFile(filepath.Join(proc, "meminfo"), []byte("MemTotal: 2048 kB\nMemFree: 1024 kB\n"), 0o644)
	h := &Host{Proc: proc, Volume: filepath.Join(t.TempDir(), "missing")}
	s, err := h.Sample()
	if err == nil || !strings.Contains(err.Error(), "statfs") || !strings.Contains(err.Error(), "cpu") {
		t.Errorf("error %v", err)
	}
	rec := &recorder{}
	HostPoint(rec, s, time.Unix(1_700_000_000, 0))
	f := rec.points[0].fields
	if len(f) != 3 || f["memFree"] != int64(1024*1024) {
		t.Errorf("partial host point %+v", f)
	}
}

// The real host answers.
func TestHostSampleReal(t *testing.T) {
	h := &Host{Volume: t.TempDir()}
	s, err := h.Sample()
	if err != nil {
		t.Fatal(err)
	}
	if !s.CPURead || s.MemTotal == 0 || s.DiskTotal == 0 || s.Uptime <= 0 {
		t.Errorf("%+v", s)
	}
}

// The lines are exactly docker-worker's: an empty line, the prefix, the
// object's fields in docker-worker's order, a line end; task events carry
// the run. Timestamps are Unix seconds, rounded down.
func TestWorkerMetricsLines(t *testing.T) {
	var out bytes.Buffer
	m := NewWorkerMetrics(&out, WorkerMetricsIdentity{
		WorkerPoolID: "proj/ci", WorkerID: "i-0abc", Region: "us-east-1", InstanceType: "m5.large", InstanceID: "i-0abc",
	})
	at := time.Unix(1_700_000_000, 999_000_000)
	m.Worker(EventWorkerReady, at)
	m.Task(EventTaskStart, at, "fYuBhC1gTnSVfVmj6ZFPHA", 0)
	want := "\nWORKER_METRICS {\"eventType\":\"workerReady\",\"worker\":\"docker-worker\",\"workerPoolId\":\"proj/ci\",\"workerId\":\"i-0abc\",\"timestamp\":1700000000,\"region\":\"us-east-1\",\"instanceType\":\"m5.large\"}\n" +
		"\nWORKER_METRICS {\"eventType\":\"taskStart\",\"worker\":\"docker-worker\",\"workerPoolId\":\"proj/ci\",\"workerId\":\"i-0abc\",\"timestamp\":1700000000,\"region\":\"us-east-1\",\"instanceType\":\"m5.large\",\"taskId\":\"fYuBhC1gTnSVfVmj6ZFPHA\",\"runId\":0}\n"
	if out.String() != want {
		t.Errorf("lines\n%q\nwant\n%q", out.String(), want)
	}

	// Unknown region and instance type are left out, as JavaScript leaves
	// out undefined values; nothing is HTML-escaped.
	out.Reset()
	NewWorkerMetrics(&out, WorkerMetricsIdentity{WorkerPoolID: "a/b", WorkerID: "<w&>"}).Worker(EventInstanceShutdown, at)
	if want := "\nWORKER_METRICS {\"eventType\":\"instanceShutdown\",\"worker\":\"docker-worker\",\"workerPoolId\":\"a/b\",\"workerId\":\"<w&>\",\"timestamp\":1700000000}\n"; out.String() != want {
		t.Errorf("line %q, want %q", out.String(), want)
	}
}

// docker-worker's test instance prints none.
func TestWorkerMetricsSuppressed(t *testing.T) {
	var out bytes.Buffer
	m := NewWorkerMetrics(&out, WorkerMetricsIdentity{WorkerPoolID: "a/b", WorkerID: "w", InstanceID: TestWorkerInstance})
	for _, ev := range []string{EventInstanceBoot, EventWorkerReady, EventInstanceShutdown} {
		m.Worker(ev, time.Now())
	}
	for _, ev := range []string{EventTaskQueue, EventTaskStart, EventTaskFinish} {
		m.Task(ev, time.Now(), "T", 0)
	}
	if out.Len() != 0 {
		t.Errorf("printed %q", out.String())
	}
}

// Concurrent events never interleave: each line is one Write.
func TestWorkerMetricsConcurrent(t *testing.T) {
	w := &writes{}
	m := NewWorkerMetrics(w, WorkerMetricsIdentity{WorkerPoolID: "a/b", WorkerID: "w"})
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() { m.Task(EventTaskFinish, time.Now(), "T", i) })
	}
	wg.Wait()
	if len(w.all) != 20 {
		t.Fatalf("%d writes", len(w.all))
	}
	for _, b := range w.all {
		rest, ok := strings.CutPrefix(string(b), "\nWORKER_METRICS ")
		var rec map[string]any
		if !ok || !strings.HasSuffix(rest, "}\n") || json.Unmarshal([]byte(rest), &rec) != nil || rec["eventType"] != "taskFinish" {
			t.Errorf("write %q", b)
		}
	}
}

type writes struct {
	mu  sync.Mutex
	all [][]byte
}

func (w *writes) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.all = append(w.all, bytes.Clone(p))
	return len(p), nil
}
