package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func newTestProc() *workerProc {
	return &workerProc{workerType: "bench-test", changed: make(chan struct{}), done: make(chan struct{})}
}

func TestWaitRecordMatchesLaterLines(t *testing.T) {
	w := newTestProc()
	w.record([]byte(`{"time":"2026-01-02T03:04:05.123456789Z","level":"INFO","msg":"cancel task","taskId":"a","source":"pulse"}`))
	w.record([]byte(`not json`))
	w.record([]byte(`{"msg":"task timings","taskId":"a","totalMs":12.5}`))
	go func() {
		w.record([]byte(`{"time":"2026-01-02T03:04:06.5Z","msg":"cancel task","taskId":"b","source":"pulse"}`))
	}()
	rec, err := w.waitRecord(context.Background(), "cancel task", func(r logRecord) bool { return r.Attrs["taskId"] == "b" }, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 1, 2, 3, 4, 6, 500_000_000, time.UTC); !rec.Time.Equal(want) {
		t.Errorf("record time %v, want %v", rec.Time, want)
	}
	if got := len(w.recordsOf("cancel task")); got != 2 {
		t.Errorf("%d cancel task records, want 2", got)
	}
	if got := w.takeTimings(); len(got) != 1 || got[0]["totalMs"] != 12.5 {
		t.Errorf("timings %v", got)
	}
}

func TestWaitRecordEndsWithTheProcess(t *testing.T) {
	w := newTestProc()
	w.record([]byte(`{"msg":"start"}`))
	close(w.done)
	if _, err := w.waitRecord(context.Background(), "claimed task", nil, time.Minute); err == nil || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("got %v, want an error saying the worker exited", err)
	}
}

func TestReliabilityRowsAndKeys(t *testing.T) {
	r := &results{NotMeasured: map[string]string{}}
	s := &r.Samples
	s.ShellLoopSeconds, s.WorkerThroughputSeconds = 1, 1 // a ratio that JSON can hold
	s.PulseCancelMs = []float64{300, 100, 200, 900}
	s.FirstClaimCleanMs = []float64{100, 120, 140}
	s.FirstClaimAfterCrashMs = []float64{800, 900, 700}
	s.CrashLeftoverContainers = []int{0, 0, 1}
	s.CrashContainersRemoved = []int{4, 4, 3}
	s.CrashLeftAfterStop = []int{0, 0, 0}
	r.summarize(options{statusPollMs: 1000})
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]float64{
		"cancel_latency_pulse_ms": 250, "cancel_latency_pulse_p99_ms": 900,
		"first_claim_after_crash_ms": 800, "first_claim_clean_ms": 120,
	} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
	tab := table(r, options{statusPollMs: 1000})
	for _, want := range []string{
		"| cancellation, Pulse | 4 × cancelTask",
		"median 250 ms, p99 900 ms",
		"| first claim after a crash |",
		"median 800 ms (700–900); recovery removed ≥ 3 containers a round; 1 of the killed process's containers left at the first claim, 0 of the restarted worker's after it stopped | median 120 ms (100–140) | ratio 6.67, +680 ms |",
	} {
		if !strings.Contains(tab, want) {
			t.Errorf("table lacks %q:\n%s", want, tab)
		}
	}
}

func TestReliabilityNotMeasured(t *testing.T) {
	r := &results{NotMeasured: map[string]string{
		"cancel_latency_pulse_ms":    `skipped (-pulse-url "")`,
		"first_claim_after_crash_ms": "skipped (-crash-rounds 0)",
	}}
	r.summarize(options{})
	if r.CancelLatencyPulseP99Ms != nil || r.FirstClaimCleanMs != nil {
		t.Errorf("figures set without samples: %v %v", r.CancelLatencyPulseP99Ms, r.FirstClaimCleanMs)
	}
	if r.NotMeasured["cancel_latency_pulse_p99_ms"] != `skipped (-pulse-url "")` || r.NotMeasured["first_claim_clean_ms"] != "skipped (-crash-rounds 0)" {
		t.Errorf("not_measured %v", r.NotMeasured)
	}
	tab := table(r, options{})
	for _, want := range []string{
		`| cancel_latency_pulse_ms | not measured: skipped (-pulse-url "") |`,
		"| first_claim_after_crash_ms | not measured: skipped (-crash-rounds 0) |",
	} {
		if !strings.Contains(tab, want) {
			t.Errorf("table lacks %q:\n%s", want, tab)
		}
	}
	if strings.Contains(tab, "| cancellation, Pulse |") || strings.Contains(tab, "| first claim after a crash |") {
		t.Errorf("rows without samples:\n%s", tab)
	}
}
