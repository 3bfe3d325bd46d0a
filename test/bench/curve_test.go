package main

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestParseCaps(t *testing.T) {
	got, err := parseCaps("1, 2,4,,16")
	if err != nil || !slices.Equal(got, []int{1, 2, 4, 16}) {
		t.Errorf("parseCaps: %v, %v", got, err)
	}
	for _, bad := range []string{"0", "x", "2,-1"} {
		if _, err := parseCaps(bad); err == nil {
			t.Errorf("parseCaps(%q) accepted", bad)
		}
	}
}

// The CPU time of this process grows while it spins, and its RSS splits
// into parts that add up to at most the whole.
func TestCPUTicksAndRSSOfSelf(t *testing.T) {
	pid := os.Getpid()
	before, err := cpuTicks(pid)
	if err != nil {
		t.Fatal(err)
	}
	x := 0
	for after := before; after == before; after, _ = cpuTicks(pid) {
		for i := range 1 << 20 {
			x ^= i
		}
	}
	_ = x
	anon, file, err := rssSplitMiB(pid)
	if err != nil {
		t.Fatal(err)
	}
	total, err := rssMiB(pid)
	if err != nil {
		t.Fatal(err)
	}
	if anon <= 0 || file <= 0 || anon+file > total+0.01 {
		t.Errorf("RSS split anon %v + file %v against total %v", anon, file, total)
	}
}

// The runner keys are in bench-results.json: numbers from the samples, or
// null with the reason when the rows did not run.
func TestRunnerKeys(t *testing.T) {
	r := &results{NotMeasured: map[string]string{}}
	s := &r.Samples
	s.ShellLoopSeconds, s.WorkerThroughputSeconds = 1, 1
	s.WorkerTaskMs = []float64{400, 500, 600}
	s.DockerRunMs = []float64{500, 550, 450}
	s.Curve = []curvePoint{{Capacity: 1, Tasks: 10, TasksPerS: 2, ShellLoopTasksPerS: 1.5, WorkerCPUMsPerTask: 12}}
	s.RSSManyTasks, s.RSSManyTasksMiB = 16, 31
	r.summarize(options{})
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if v, _ := got["resolved_vs_docker_run_ratio"].(float64); v != 1 {
		t.Errorf("resolved_vs_docker_run_ratio %v, want 1 (median 500 over median 500)", got["resolved_vs_docker_run_ratio"])
	}
	if c, _ := got["throughput_curve"].([]any); len(c) != 1 {
		t.Errorf("throughput_curve %v", got["throughput_curve"])
	}
	if v, _ := got["rss_16tasks_mib"].(float64); v != 31 {
		t.Errorf("rss_16tasks_mib %v", got["rss_16tasks_mib"])
	}
	if tbl := table(r, options{capacity: 4, throughputN: 1}); !strings.Contains(tbl, "| 1 | 2.00") || !strings.Contains(tbl, "ratio 1.00 | ≤ 0.95") {
		t.Errorf("table lacks the runner rows:\n%s", tbl)
	}

	empty := &results{NotMeasured: map[string]string{}}
	empty.Samples.ShellLoopSeconds, empty.Samples.WorkerThroughputSeconds = 1, 1
	empty.summarize(options{})
	for _, k := range []string{"throughput_curve", "rss_16tasks_mib"} {
		if empty.NotMeasured[k] == "" {
			t.Errorf("%s: no reason for the null", k)
		}
	}
}
