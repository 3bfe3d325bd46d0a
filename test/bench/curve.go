package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// curvePoint is one capacity of the scale curve: n trivial tasks at worker
// capacity c against `xargs -P c docker run --rm`, and the worker
// process's CPU time (user + system) over its part, per task.
type curvePoint struct {
	Capacity           int     `json:"capacity"`
	Tasks              int     `json:"tasks"`
	TasksPerS          float64 `json:"tasks_per_s"`
	ShellLoopTasksPerS float64 `json:"shell_loop_tasks_per_s"`
	WorkerCPUMsPerTask float64 `json:"worker_cpu_ms_per_task"`
	WorkerSeconds      float64 `json:"worker_seconds"`
	ShellLoopSeconds   float64 `json:"shell_loop_seconds"`
	WorkerCPUSeconds   float64 `json:"worker_cpu_seconds"`
	WorkerPeakRSSMiB   float64 `json:"worker_peak_rss_mib"`
	WorkerFinalRSSMiB  float64 `json:"worker_final_rss_mib"`
}

// parseCaps reads the -curve-caps list ("1,2,4").
func parseCaps(s string) ([]int, error) {
	var caps []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		c, err := strconv.Atoi(f)
		if err != nil || c < 1 {
			return nil, fmt.Errorf("-curve-caps: %q is not a capacity", f)
		}
		caps = append(caps, c)
	}
	return caps, nil
}

// curve measures the scale curve: for each capacity, the shell loop at
// that parallelism, then a fresh worker at that capacity running as many
// trivial tasks (first createTask to last resolution, as the throughput
// row), with the worker's CPU time read from /proc/<pid>/stat before the
// first task and after the last resolution.
func (e *env) curve(ctx context.Context, r *results) error {
	caps, err := parseCaps(e.o.curveCaps)
	if err != nil {
		return err
	}
	if e.o.curveN <= 0 || len(caps) == 0 {
		return errNotMeasured("skipped (-curve-n 0 or no -curve-caps)")
	}
	hz, err := clockTicks(ctx)
	if err != nil {
		return err
	}
	n := e.o.curveN
	for _, c := range caps {
		p := curvePoint{Capacity: c, Tasks: n}
		start := time.Now()
		shell := fmt.Sprintf("seq %d | xargs -P %d -I{} docker run --rm %s true", n, c, e.o.image)
		cmd := exec.CommandContext(ctx, "sh", "-c", shell)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("shell loop -P%d: %w", c, err)
		}
		p.ShellLoopSeconds = time.Since(start).Seconds()

		w, err := e.startWorker(ctx, c)
		if err != nil {
			return err
		}
		err = func() error {
			defer w.stop()
			time.Sleep(500 * time.Millisecond) // let the worker start claiming
			pid := w.cmd.Process.Pid
			cpu0, err := cpuTicks(pid)
			if err != nil {
				return err
			}
			peak := &peakRSS{pid: pid}
			stopSampling := peak.sample(100 * time.Millisecond)
			start := time.Now()
			ids := make([]string, n)
			for i := range ids {
				if ids[i], err = e.createTask(ctx, w, []string{"true"}, 60); err != nil {
					stopSampling()
					return err
				}
			}
			var last time.Time
			for _, id := range ids {
				run, err := e.waitResolved(ctx, id, 10*time.Minute)
				if err != nil {
					stopSampling()
					return err
				}
				if run.Resolved.After(last) {
					last = run.Resolved
				}
			}
			cpu1, err := cpuTicks(pid)
			stopSampling()
			if err != nil {
				return err
			}
			p.WorkerSeconds = last.Sub(start).Seconds()
			p.WorkerCPUSeconds = float64(cpu1-cpu0) / float64(hz)
			p.WorkerPeakRSSMiB = peak.max()
			p.WorkerFinalRSSMiB, _ = rssMiB(pid)
			return nil
		}()
		if err != nil {
			return fmt.Errorf("capacity %d: %w", c, err)
		}
		p.TasksPerS = float64(n) / p.WorkerSeconds
		p.ShellLoopTasksPerS = float64(n) / p.ShellLoopSeconds
		p.WorkerCPUMsPerTask = p.WorkerCPUSeconds * 1000 / float64(n)
		fmt.Fprintf(os.Stderr, "bench: capacity %d: worker %.2f tasks/s, shell loop %.2f tasks/s, worker CPU %.1f ms a task\n",
			c, p.TasksPerS, p.ShellLoopTasksPerS, p.WorkerCPUMsPerTask)
		r.Samples.Curve = append(r.Samples.Curve, p)
	}
	return nil
}

// memory16 samples the worker's RSS idle after start and at its peak while
// rssTasks tasks (its capacity) print at once for 5 s.
func (e *env) memory16(ctx context.Context, r *results) error {
	c := e.o.rssTasks
	if c <= 0 {
		return errNotMeasured("skipped (-rss-tasks 0)")
	}
	w, err := e.startWorker(ctx, c)
	if err != nil {
		return err
	}
	defer w.stop()
	time.Sleep(2 * time.Second)
	pid := w.cmd.Process.Pid
	if r.Samples.RSSManyIdleMiB, err = rssMiB(pid); err != nil {
		return err
	}
	if r.Samples.RSSIdleAnonMiB, r.Samples.RSSIdleFileMiB, err = rssSplitMiB(pid); err != nil {
		return err
	}
	var ids []string
	for range c {
		id, err := e.createTask(ctx, w, []string{"/bin/sh", "-c", "for i in $(seq 50); do echo line $i; sleep 0.1; done"}, 300)
		if err != nil {
			return err
		}
		ids = append(ids, id)
	}
	peak := &peakRSS{pid: pid}
	stop := peak.sample(50 * time.Millisecond)
	for _, id := range ids {
		if _, err := e.waitResolved(ctx, id, 10*time.Minute); err != nil {
			stop()
			return err
		}
	}
	stop()
	r.Samples.RSSManyTasksMiB = peak.max()
	r.Samples.RSSManyTasks = c
	return nil
}

// rssSplitMiB is the resident set of pid split into anonymous memory
// (heap, stacks) and file-backed pages (the binary's text and read-only
// data), in MiB.
func rssSplitMiB(pid int) (anon, file float64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "RssAnon" && k != "RssFile") {
			continue
		}
		kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/status %s: %w", pid, k, err)
		}
		if k == "RssAnon" {
			anon = float64(kb) / 1024
		} else {
			file = float64(kb) / 1024
		}
	}
	return anon, file, nil
}

// peakRSS samples a process's RSS until stopped and keeps the peak.
type peakRSS struct {
	pid  int
	mu   sync.Mutex
	peak float64
}

// sample starts sampling every d; the returned function stops it and
// waits.
func (p *peakRSS) sample(d time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			if v, err := rssMiB(p.pid); err == nil {
				p.mu.Lock()
				p.peak = max(p.peak, v)
				p.mu.Unlock()
			}
			select {
			case <-done:
				return
			case <-time.After(d):
			}
		}
	})
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

func (p *peakRSS) max() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.peak
}

// clockTicks is the unit of utime and stime in /proc/<pid>/stat
// (sysconf(_SC_CLK_TCK)), asked of getconf.
func clockTicks(ctx context.Context) (int64, error) {
	out, err := exec.CommandContext(ctx, "getconf", "CLK_TCK").Output()
	if err != nil {
		return 0, fmt.Errorf("getconf CLK_TCK: %w", err)
	}
	hz, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil || hz <= 0 {
		return 0, fmt.Errorf("getconf CLK_TCK: %q", out)
	}
	return hz, nil
}

// cpuTicks is the user + system CPU time of pid (all its threads) in
// clock ticks, from /proc/<pid>/stat.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: fields are counted
	// after its closing parenthesis, from field 3 (state).
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	const utime, stime = 14 - 3, 15 - 3
	if len(f) <= stime {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	u, err1 := strconv.ParseInt(f[utime], 10, 64)
	s, err2 := strconv.ParseInt(f[stime], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q, stime %q", pid, f[utime], f[stime])
	}
	return u + s, nil
}

// summarizeRunner sets the headline figures of the runner rows: created →
// resolved over the paired `docker run --rm` (the overhead row's samples),
// the scale curve and the RSS at many tasks.
func (r *results) summarizeRunner(o options) {
	s := &r.Samples
	if len(s.WorkerTaskMs) > 0 && median(s.DockerRunMs) > 0 {
		r.ResolvedVsDockerRunRatio = ptr(median(s.WorkerTaskMs) / median(s.DockerRunMs))
	}
	if len(s.Curve) > 0 {
		r.ThroughputCurve = s.Curve
	} else if _, ok := r.NotMeasured["throughput_curve"]; !ok {
		r.NotMeasured["throughput_curve"] = "not run"
	}
	if s.RSSManyTasks > 0 {
		r.RSS16TasksMiB = ptr(s.RSSManyTasksMiB)
	} else if _, ok := r.NotMeasured["rss_16tasks_mib"]; !ok {
		r.NotMeasured["rss_16tasks_mib"] = "not run"
	}
}

// runnerRows renders the rows of the runner figures: resolved vs
// `docker run --rm`, the RSS at many tasks, and the scale curve as its
// own table.
func runnerRows(r *results) (rows, curve string) {
	s := r.Samples
	var b strings.Builder
	if r.ResolvedVsDockerRunRatio != nil {
		fmt.Fprintf(&b, "| resolved vs `docker run --rm` | the overhead row's tasks: createTask → resolved over the paired bare `docker run --rm … true` (medians) | median %.0f ms | median %.0f ms | ratio %.2f | ≤ 0.95 |\n",
			median(s.WorkerTaskMs), median(s.DockerRunMs), *r.ResolvedVsDockerRunRatio)
	}
	if r.RSS16TasksMiB != nil {
		fmt.Fprintf(&b, "| worker RSS, %d tasks | worker at capacity %d: idle after 2 s, then the peak while %d tasks print for 5 s (50 ms samples) | idle %.1f MiB (anon %.1f, file-backed %.1f), peak %.1f MiB | | | < 20 MiB idle, < 40 MiB |\n",
			s.RSSManyTasks, s.RSSManyTasks, s.RSSManyTasks, s.RSSManyIdleMiB, s.RSSIdleAnonMiB, s.RSSIdleFileMiB, *r.RSS16TasksMiB)
	}
	if len(s.Curve) > 0 {
		var c strings.Builder
		fmt.Fprintf(&c, "\nScale curve (%d trivial tasks a capacity; the shell loop is `seq N | xargs -P<capacity> docker run --rm … true`; worker CPU is user + system of the `docker-worker run` process from /proc/<pid>/stat over first createTask → last resolution):\n\n", s.Curve[0].Tasks)
		c.WriteString("| capacity | worker tasks/s | shell loop tasks/s | ratio | worker CPU ms a task | worker peak RSS |\n|---|---|---|---|---|---|\n")
		for _, p := range s.Curve {
			fmt.Fprintf(&c, "| %d | %.2f (%.1f s) | %.2f (%.1f s) | %.2f | %.1f | %.1f MiB |\n",
				p.Capacity, p.TasksPerS, p.WorkerSeconds, p.ShellLoopTasksPerS, p.ShellLoopSeconds,
				p.TasksPerS/p.ShellLoopTasksPerS, p.WorkerCPUMsPerTask, p.WorkerPeakRSSMiB)
		}
		curve = c.String()
	}
	for _, k := range []string{"throughput_curve", "rss_16tasks_mib"} {
		if why, ok := r.NotMeasured[k]; ok {
			fmt.Fprintf(&b, "| %s | not measured: %s | | | | |\n", k, why)
		}
	}
	return b.String(), curve
}
