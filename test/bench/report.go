package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"time"
)

// results is what bench-results.json holds: the headline figures (null
// when not measured) and every raw sample.
type results struct {
	Machine string    `json:"machine"`
	When    time.Time `json:"when"`

	OverheadMsOverDocker     *float64 `json:"overhead_ms_over_docker"`
	ThroughputRatio          *float64 `json:"throughput_ratio"`
	LivelogP99Ms             *float64 `json:"livelog_p99_ms"`
	ArtifactUploadRatio      *float64 `json:"artifact_upload_ratio"`
	ArtifactGzipRatio        *float64 `json:"artifact_gzip_ratio"`
	ArtifactDir10kFilesS     *float64 `json:"artifact_dir_10k_files_s"`
	ArtifactPeakRSSGrowthMiB *float64 `json:"artifact_peak_rss_growth_mib"`
	RSSIdleMiB               *float64 `json:"rss_idle_mib"`
	RSS4TasksMiB             *float64 `json:"rss_4tasks_mib"`
	CancelLatencyMs          *float64 `json:"cancel_latency_ms"`
	// Cancellation through Pulse (no status polling): median and p99.
	CancelLatencyPulseMs    *float64 `json:"cancel_latency_pulse_ms"`
	CancelLatencyPulseP99Ms *float64 `json:"cancel_latency_pulse_p99_ms"`
	// Process start → first claim (medians): restarted on the state of a
	// SIGKILLed process that left running tasks, and a fresh start.
	FirstClaimAfterCrashMs *float64 `json:"first_claim_after_crash_ms"`
	FirstClaimCleanMs      *float64 `json:"first_claim_clean_ms"`
	// Task image: first use claim→started over the shell pipeline, second
	// use over a named local image, and downloads (in artifact sizes)
	// when four tasks start at once on an uncached image.
	TaskImageFirstRatio          *float64 `json:"task_image_first_ratio"`
	TaskImageCachedOverNamedMs   *float64 `json:"task_image_cached_over_named_ms"`
	TaskImageConcurrentDownloads *float64 `json:"task_image_concurrent_downloads"`
	// Under load: live-log p99 with 100 readers on one task; the embedded
	// queue's claim + resolve round trip (p50) and its sustained
	// create → claim → resolve rate with 16 clients.
	LivelogP99Ms100Readers *float64 `json:"livelog_p99_ms_100_readers"`
	QueueClaimResolveP50Ms *float64 `json:"queue_claim_resolve_p50_ms"`
	QueueTasksPerS         *float64 `json:"queue_tasks_per_s"`

	// Runner: created → resolved over the paired `docker run --rm`
	// (medians), the scale curve, the peak RSS with rssTasks tasks.
	ResolvedVsDockerRunRatio *float64     `json:"resolved_vs_docker_run_ratio"`
	ThroughputCurve          []curvePoint `json:"throughput_curve"`
	RSS16TasksMiB            *float64     `json:"rss_16tasks_mib"`

	// NotMeasured says why a headline figure is null.
	NotMeasured map[string]string `json:"not_measured"`
	Samples     samples           `json:"samples"`
}

type samples struct {
	WorkerTaskMs            []float64            `json:"worker_task_ms"`
	DockerRunMs             []float64            `json:"docker_run_ms"`
	PhaseMs                 []map[string]float64 `json:"worker_phase_ms"`
	ShellLoopSeconds        float64              `json:"shell_loop_seconds"`
	WorkerThroughputSeconds float64              `json:"worker_throughput_seconds"`
	RSSIdleMiB              float64              `json:"rss_idle_mib"`
	RSS4TasksMiB            float64              `json:"rss_4tasks_mib"`
	CancelMs                []float64            `json:"cancel_ms"`
	PulseCancelMs           []float64            `json:"pulse_cancel_ms"`
	FirstClaimCleanMs       []float64            `json:"first_claim_clean_ms"`
	FirstClaimAfterCrashMs  []float64            `json:"first_claim_after_crash_ms"`
	// Per crash round: the killed process's containers still there at the
	// restarted worker's first claim, and what its recovery removed.
	CrashLeftoverContainers []int `json:"crash_leftover_containers"`
	CrashContainersRemoved  []int `json:"crash_containers_removed"`
	// Per crash round: the restarted worker's containers left after the
	// bench cancelled the tasks and stopped it (SIGTERM); the bench
	// removes them.
	CrashLeftAfterStop     []int           `json:"crash_left_after_stop"`
	LivelogDelayMs         []float64       `json:"livelog_delay_ms"`
	ArtifactIncompressible uploadSample    `json:"artifact_incompressible"`
	ArtifactText           uploadSample    `json:"artifact_text"`
	ArtifactDir            dirSample       `json:"artifact_dir"`
	StatusPollMs           int             `json:"status_poll_ms"`
	TaskImage              taskImageSample `json:"task_image"`

	// The rows under load (queue.go, livelog_load.go).
	Queue       queueSample           `json:"queue"`
	LivelogLoad []livelogLoadScenario `json:"livelog_load"`
	// Scale curve and the many-tasks memory row.
	Curve           []curvePoint `json:"curve"`
	RSSManyTasks    int          `json:"rss_many_tasks"`
	RSSManyIdleMiB  float64      `json:"rss_many_idle_mib"`
	RSSManyTasksMiB float64      `json:"rss_many_tasks_mib"`
	// The idle RSS of that worker split: anonymous, file-backed.
	RSSIdleAnonMiB float64 `json:"rss_idle_anon_mib"`
	RSSIdleFileMiB float64 `json:"rss_idle_file_mib"`
}

func ptr(v float64) *float64 { return &v }

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func minMaxInt(xs []int) (int, int) {
	if len(xs) == 0 {
		return 0, 0
	}
	return slices.Min(xs), slices.Max(xs)
}

func minMax(xs []float64) (float64, float64) {
	if len(xs) == 0 {
		return 0, 0
	}
	lo, hi := xs[0], xs[0]
	for _, x := range xs {
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo, hi
}

func run(ctx context.Context, o options) error {
	dir, err := os.MkdirTemp("", "docker-worker-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	e := &env{o: o, dir: dir, bin: o.bin}
	if e.bin == "" {
		if e.bin, err = buildBinary(ctx, dir); err != nil {
			return err
		}
	}
	if err := e.startQueue(ctx); err != nil {
		return err
	}
	defer e.stopQueue()

	r := &results{Machine: machine(), When: time.Now().UTC(), NotMeasured: map[string]string{}}
	if o.only != "" {
		return e.runOnly(ctx, r)
	}
	step := func(name string, f func(context.Context, *results) error) error {
		fmt.Fprintf(os.Stderr, "bench: %s...\n", name)
		start := time.Now()
		if err := f(ctx, r); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		fmt.Fprintf(os.Stderr, "bench: %s done in %.1fs\n", name, time.Since(start).Seconds())
		return nil
	}
	if err := step("per-task overhead", e.overhead); err != nil {
		return err
	}
	if err := step("throughput", e.throughput); err != nil {
		return err
	}
	if err := step("worker memory", e.memory); err != nil {
		return err
	}
	if o.cancelN > 0 {
		if err := step("cancellation", e.cancellation); err != nil {
			return err
		}
	}
	// Rows that need worker features report why they are missing instead
	// of failing the run.
	optional := func(key, name string, f func(context.Context, *results) error) error {
		err := step(name, f)
		var nm notMeasured
		if errors.As(err, &nm) {
			r.NotMeasured[key] = string(nm)
			return nil
		}
		return err
	}
	if err := optional("cancel_latency_pulse_ms", "cancellation through Pulse", e.pulseCancellation); err != nil {
		return err
	}
	if err := optional("first_claim_after_crash_ms", "first claim after a crash", e.crashRecovery); err != nil {
		return err
	}
	if err := optional("livelog_p99_ms", "live log latency", e.livelog); err != nil {
		return err
	}
	if o.artifactMiB > 0 {
		if err := optional("artifact_upload_ratio", "artifact upload", e.artifactUpload); err != nil {
			return err
		}
	} else {
		r.NotMeasured["artifact_upload_ratio"] = "skipped (-artifact-mib 0)"
	}
	if o.dirFiles > 0 {
		if err := optional("artifact_dir_10k_files_s", "directory artifact", e.artifactDir); err != nil {
			return err
		}
	} else {
		r.NotMeasured["artifact_dir_10k_files_s"] = "skipped (-artifact-dir-files 0)"
	}
	if err := optional("task_image_first_ratio", "task image", e.taskImage); err != nil {
		return err
	}
	if err := optional("rss_16tasks_mib", "worker memory, many tasks", e.memory16); err != nil {
		return err
	}
	if err := optional("throughput_curve", "scale curve", e.curve); err != nil {
		return err
	}
	if err := e.loadRows(ctx, r, step); err != nil {
		return err
	}
	r.summarize(o)
	r.summarizeLoad()
	fmt.Println(table(r, o) + loadTable(r))
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(o.out, append(b, '\n'), 0o644)
}

// summarize sets the headline figures from the samples, and the reason
// for each one left null.
func (r *results) summarize(o options) {
	s := &r.Samples
	if ti := s.TaskImage; len(ti.FirstWorkerMs) > 0 && ti.ArtifactBytes > 0 {
		r.TaskImageFirstRatio = ptr(median(ti.FirstWorkerMs) / median(ti.FirstPipelineMs))
		r.TaskImageCachedOverNamedMs = ptr(median(ti.CachedWorkerMs) - median(ti.NamedWorkerMs))
		r.TaskImageConcurrentDownloads = ptr(float64(ti.ConcurrentBytes) / float64(ti.ArtifactBytes))
	} else if why, ok := r.NotMeasured["task_image_first_ratio"]; ok {
		r.NotMeasured["task_image_cached_over_named_ms"] = why
		r.NotMeasured["task_image_concurrent_downloads"] = why
	}
	r.summarizeRunner(o)
	r.OverheadMsOverDocker = ptr(median(s.WorkerTaskMs) - median(s.DockerRunMs))
	r.ThroughputRatio = ptr(s.ShellLoopSeconds / s.WorkerThroughputSeconds)
	r.RSSIdleMiB = ptr(s.RSSIdleMiB)
	r.RSS4TasksMiB = ptr(s.RSS4TasksMiB)
	if len(s.LivelogDelayMs) > 0 {
		r.LivelogP99Ms = ptr(percentile(s.LivelogDelayMs, 0.99))
	}
	if a := s.ArtifactIncompressible; len(a.WorkerSeconds) > 0 {
		r.ArtifactUploadRatio = ptr(median(a.RawPutSeconds) / median(a.WorkerSeconds))
		r.ArtifactPeakRSSGrowthMiB = ptr(max(a.growth(), s.ArtifactText.growth()))
	} else if why, ok := r.NotMeasured["artifact_upload_ratio"]; ok {
		r.NotMeasured["artifact_peak_rss_growth_mib"] = why
	}
	if a := s.ArtifactText; len(a.WorkerSeconds) > 0 {
		r.ArtifactGzipRatio = ptr(median(a.RawPutSeconds) / median(a.WorkerSeconds))
	} else if why, ok := r.NotMeasured["artifact_upload_ratio"]; ok {
		r.NotMeasured["artifact_gzip_ratio"] = why
	}
	if d := s.ArtifactDir; len(d.LayersSeconds) > 0 {
		if d.Files == 10000 {
			r.ArtifactDir10kFilesS = ptr(median(d.LayersSeconds))
		} else {
			r.NotMeasured["artifact_dir_10k_files_s"] = fmt.Sprintf("measured with %d files, not 10,000 (-artifact-dir-files)", d.Files)
		}
	}
	s.StatusPollMs = o.statusPollMs
	if len(s.CancelMs) > 0 {
		r.CancelLatencyMs = ptr(median(s.CancelMs))
	} else {
		r.NotMeasured["cancel_latency_ms"] = "skipped (-cancel-n 0)"
	}
	if d := s.PulseCancelMs; len(d) > 0 {
		r.CancelLatencyPulseMs = ptr(median(d))
		r.CancelLatencyPulseP99Ms = ptr(percentile(d, 0.99))
	} else if why, ok := r.NotMeasured["cancel_latency_pulse_ms"]; ok {
		r.NotMeasured["cancel_latency_pulse_p99_ms"] = why
	}
	if len(s.FirstClaimAfterCrashMs) > 0 {
		r.FirstClaimAfterCrashMs = ptr(median(s.FirstClaimAfterCrashMs))
		r.FirstClaimCleanMs = ptr(median(s.FirstClaimCleanMs))
	} else if why, ok := r.NotMeasured["first_claim_after_crash_ms"]; ok {
		r.NotMeasured["first_claim_clean_ms"] = why
	}
}

// table renders the Markdown summary.
func table(r *results, o options) string {
	s := r.Samples
	var b strings.Builder
	fmt.Fprintf(&b, "Machine: %s  \nRun: %s\n\n", r.Machine, r.When.Format(time.RFC3339))
	b.WriteString("| benchmark | measured | worker | baseline | result | target |\n|---|---|---|---|---|---|\n")
	wlo, whi := minMax(s.WorkerTaskMs)
	dlo, dhi := minMax(s.DockerRunMs)
	fmt.Fprintf(&b, "| per-task overhead | %d trivial tasks createTask→resolved, interleaved with %d `docker run --rm … true` | median %.0f ms (min %.0f, max %.0f) | median %.0f ms (min %.0f, max %.0f) | %+.0f ms, ratio %.2f | ≤ +100 ms |\n",
		len(s.WorkerTaskMs), len(s.DockerRunMs), median(s.WorkerTaskMs), wlo, whi, median(s.DockerRunMs), dlo, dhi,
		*r.OverheadMsOverDocker, median(s.WorkerTaskMs)/median(s.DockerRunMs))
	fmt.Fprintf(&b, "| throughput | %d trivial tasks at capacity %d vs `xargs -P%d docker run --rm` | %.2f tasks/s (%.1f s) | %.2f tasks/s (%.1f s) | ratio %.2f | ≥ 1.10 |\n",
		o.throughputN, o.capacity, o.capacity, float64(o.throughputN)/s.WorkerThroughputSeconds, s.WorkerThroughputSeconds,
		float64(o.throughputN)/s.ShellLoopSeconds, s.ShellLoopSeconds, *r.ThroughputRatio)
	fmt.Fprintf(&b, "| worker RSS idle | after start, 2 s | %.1f MiB | | | < 20 MiB |\n", s.RSSIdleMiB)
	fmt.Fprintf(&b, "| worker RSS, %d tasks | peak while %d tasks print for 5 s (50 ms samples) | %.1f MiB | | | < 60 MiB |\n", o.capacity, o.capacity, s.RSS4TasksMiB)
	if len(s.CancelMs) > 0 {
		lo, hi := minMax(s.CancelMs)
		fmt.Fprintf(&b, "| cancellation, status polling | %d × cancelTask → container gone, worker without Pulse polling task status every %d ms (the fallback path) | median %.0f ms (min %.0f, max %.0f) | | | within the poll interval |\n",
			len(s.CancelMs), s.StatusPollMs, median(s.CancelMs), lo, hi)
	}
	if d := s.PulseCancelMs; len(d) > 0 {
		lo, _ := minMax(d)
		fmt.Fprintf(&b, "| cancellation, Pulse | %d × cancelTask → container gone, worker stopped by the queue's task-exception message (no status polling) | median %.0f ms, p99 %.0f ms (min %.0f) | | | p99 ≤ 1000 ms |\n",
			len(d), *r.CancelLatencyPulseMs, *r.CancelLatencyPulseP99Ms, lo)
	}
	if a, c := s.FirstClaimAfterCrashMs, s.FirstClaimCleanMs; len(a) > 0 {
		alo, ahi := minMax(a)
		clo, chi := minMax(c)
		sum := func(xs []int) (n int) {
			for _, x := range xs {
				n += x
			}
			return n
		}
		removed, _ := minMaxInt(s.CrashContainersRemoved)
		fmt.Fprintf(&b, "| first claim after a crash | process start → first `claimed task`, %d rounds: restarted on the state directory of a SIGKILLed worker that ran %d tasks (recovery first: removes their containers, uploads their logs, resolves them worker-shutdown) vs a fresh worker with an empty state directory and one task pending | median %.0f ms (%.0f–%.0f); recovery removed ≥ %d containers a round; %d of the killed process's containers left at the first claim, %d of the restarted worker's after it stopped | median %.0f ms (%.0f–%.0f) | ratio %.2f, %+.0f ms | 0 containers left |\n",
			len(a), crashOrphans, *r.FirstClaimAfterCrashMs, alo, ahi, removed, sum(s.CrashLeftoverContainers), sum(s.CrashLeftAfterStop),
			*r.FirstClaimCleanMs, clo, chi, *r.FirstClaimAfterCrashMs / *r.FirstClaimCleanMs, *r.FirstClaimAfterCrashMs-*r.FirstClaimCleanMs)
	}
	if d := s.LivelogDelayMs; len(d) > 0 {
		_, hi := minMax(d)
		fmt.Fprintf(&b, "| live log latency | %d lines, one per 10 ms, container clock → HTTP reader on the live log URL | p50 %.1f ms, p99 %.1f ms, max %.1f ms | | | p99 ≤ 50 ms |\n",
			len(d), percentile(d, 0.5), percentile(d, 0.99), hi)
	}
	for _, u := range []struct {
		what, target string
		a            uploadSample
	}{{"artifact upload, incompressible `.zst` (not gzipped)", "≥ 0.90", s.ArtifactIncompressible}, {"artifact upload, text `.txt` (gzipped)", "≥ 0.70", s.ArtifactText}} {
		if len(u.a.WorkerSeconds) == 0 {
			continue
		}
		mb := float64(u.a.Bytes) / 1e6
		ws, rs := median(u.a.WorkerSeconds), median(u.a.RawPutSeconds)
		wlo, whi := minMax(u.a.WorkerSeconds)
		rlo, rhi := minMax(u.a.RawPutSeconds)
		fmt.Fprintf(&b, "| %s | %d MiB file artifact (worker's artifacts phase: read from the container and PUT; a temp file only for gzip) vs raw PUT of a same-sized file to the same queue, %d interleaved rounds | median %.0f MB/s (%.1f–%.1f s), RSS growth ≤ %.1f MiB | median %.0f MB/s (%.1f–%.1f s) | ratio %.2f | %s, RSS growth < 64 MiB |\n",
			u.what, u.a.Bytes>>20, len(u.a.WorkerSeconds), mb/ws, wlo, whi, u.a.growth(), mb/rs, rlo, rhi, rs/ws, u.target)
	}
	b.WriteString(dirRow(s.ArtifactDir))
	if ti := s.TaskImage; len(ti.FirstWorkerMs) > 0 {
		wlo, whi := minMax(ti.FirstWorkerMs)
		plo, phi := minMax(ti.FirstPipelineMs)
		mib := float64(ti.ArtifactBytes) / (1 << 20)
		fmt.Fprintf(&b, "| task image, first use | %.0f MiB `.tar.zst` task image: claim → container started vs `curl | zstd -d | docker load` of the same artifact, %d interleaved rounds | median %.0f ms (%.0f–%.0f) | median %.0f ms (%.0f–%.0f) | ratio %.2f | ≤ 1.05 |\n",
			mib, len(ti.FirstWorkerMs), median(ti.FirstWorkerMs), wlo, whi, median(ti.FirstPipelineMs), plo, phi, *r.TaskImageFirstRatio)
		fmt.Fprintf(&b, "| task image, first use, image phase only | download, decompress and load (no container) vs the same pipeline | median %.0f ms | median %.0f ms | ratio %.2f | |\n",
			median(ti.FirstImageMs), median(ti.FirstPipelineMs), median(ti.FirstImageMs)/median(ti.FirstPipelineMs))
		fmt.Fprintf(&b, "| task image, second use | claim → container started, loaded image vs a named local image | median %.0f ms | median %.0f ms | %+.0f ms | ≤ +20 ms |\n",
			median(ti.CachedWorkerMs), median(ti.NamedWorkerMs), *r.TaskImageCachedOverNamedMs)
		fmt.Fprintf(&b, "| task image, 4 concurrent first uses | artifact bytes served by the queue | %.2f × the artifact (%d of %d bytes) | | | once |\n",
			*r.TaskImageConcurrentDownloads, ti.ConcurrentBytes, ti.ArtifactBytes)
	}
	runnerTable, curveTable := runnerRows(r)
	b.WriteString(runnerTable)
	for _, k := range []string{"livelog_p99_ms", "artifact_upload_ratio", "artifact_peak_rss_growth_mib", "cancel_latency_ms", "cancel_latency_pulse_ms", "first_claim_after_crash_ms", "task_image_first_ratio"} {
		if why, ok := r.NotMeasured[k]; ok {
			fmt.Fprintf(&b, "| %s | not measured: %s | | | | |\n", k, why)
		}
	}
	if len(s.PhaseMs) > 0 {
		b.WriteString("\nWorker phase breakdown (median ms over the overhead tasks, each since the previous phase; claim is the start; removed is the container's removal, after the resolution; total is claim → resolved):\n\n| phase | median ms |\n|---|---|\n")
		for _, p := range []string{"imageMs", "createdMs", "startedMs", "exitedMs", "artifactsMs", "logUploadedMs", "resolvedMs", "removedMs", "totalMs"} {
			var xs []float64
			for _, m := range s.PhaseMs {
				if v, ok := m[p]; ok {
					xs = append(xs, v)
				}
			}
			if len(xs) > 0 {
				fmt.Fprintf(&b, "| %s | %.1f |\n", strings.TrimSuffix(p, "Ms"), median(xs))
			}
		}
	}
	b.WriteString(curveTable)
	return b.String()
}
