package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
)

// loadRows runs the rows under load (the embedded queue, the live log
// with many readers) through step, each unless its flag skips it; a row
// the worker cannot run is reported not measured.
func (e *env) loadRows(ctx context.Context, r *results, step func(string, func(context.Context, *results) error) error) error {
	only := strings.Split(e.o.only, ",")
	want := func(name string) bool { return e.o.only == "" || slices.Contains(only, name) }
	if want("queue") {
		if e.o.queueRounds > 0 {
			if err := step("embedded queue", e.queueRows); err != nil {
				return err
			}
		} else {
			r.NotMeasured["queue_claim_resolve_p50_ms"] = "skipped (-queue-rounds 0)"
		}
	}
	if want("livelog-load") {
		if e.o.livelogReaders > 0 {
			err := step("live log under load", e.livelogLoad)
			var nm notMeasured
			if errors.As(err, &nm) {
				r.NotMeasured["livelog_p99_ms_100_readers"] = string(nm)
			} else if err != nil {
				return err
			}
		} else {
			r.NotMeasured["livelog_p99_ms_100_readers"] = "skipped (-livelog-readers 0)"
		}
	}
	return nil
}

// runOnly runs just the rows -only names, prints their table and writes
// their figures (the other headline figures stay null).
func (e *env) runOnly(ctx context.Context, r *results) error {
	step := func(name string, f func(context.Context, *results) error) error {
		fmt.Fprintf(os.Stderr, "bench: %s...\n", name)
		if err := f(ctx, r); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}
	if err := e.loadRows(ctx, r, step); err != nil {
		return err
	}
	r.summarizeLoad()
	fmt.Printf("Machine: %s  \nRun: %s (-only %s)\n%s", r.Machine, r.When.Format("2006-01-02T15:04:05Z"), e.o.only, loadTable(r))
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(e.o.out, append(b, '\n'), 0o644)
}

// realQueueTasksPerS is the sequential rate of the real Taskcluster queue
// on this class of machine, as measured for issue 15: about 20 ms a
// createTask and 40–60 ms a claim + resolve, so about 15 tasks a second.
const realQueueTasksPerS = 15.0

// summarizeLoad sets the headline figures of the rows under load.
func (r *results) summarizeLoad() {
	if q := r.Samples.Queue; len(q.ClaimResolveMs) > 0 {
		r.QueueClaimResolveP50Ms = ptr(percentile(q.ClaimResolveMs, 0.5))
		if q.Seconds > 0 {
			r.QueueTasksPerS = ptr(float64(q.Tasks) / q.Seconds)
		}
	} else if why, ok := r.NotMeasured["queue_claim_resolve_p50_ms"]; ok {
		r.NotMeasured["queue_tasks_per_s"] = why
	}
	if l := r.Samples.LivelogLoad; len(l) > 0 && len(l[0].DelayMs) > 0 {
		r.LivelogP99Ms100Readers = ptr(percentile(l[0].DelayMs, 0.99))
	}
}

// loadTable renders the rows under load as a table of their own.
func loadTable(r *results) string {
	var b strings.Builder
	b.WriteString("\nUnder load:\n\n| benchmark | measured | worker | baseline | result | target |\n|---|---|---|---|---|---|\n")
	if q := r.Samples.Queue; len(q.ClaimResolveMs) > 0 {
		lo, hi := minMax(q.ClaimResolveMs)
		fmt.Fprintf(&b, "| queue claim + resolve | %d × claimWork then reportCompleted with the claim's credentials, one client, Hawk-signed over HTTP, separate `docker-worker queue` process (createTask before each: p50 %.1f ms), each followed by two bare fsynced bbolt transactions (the floor: claim and resolve are each durable before their answer) | p50 %.1f ms, p99 %.1f ms (min %.1f, max %.1f) | two bare transactions: p50 %.1f ms | ratio %.2f | p50 ≤ 5 ms |\n",
			len(q.ClaimResolveMs), percentile(q.CreateMs, 0.5), *r.QueueClaimResolveP50Ms, percentile(q.ClaimResolveMs, 0.99), lo, hi,
			percentile(q.PairMs, 0.5), *r.QueueClaimResolveP50Ms/percentile(q.PairMs, 0.5))
		base := float64(q.Tasks) / q.BaselineSeconds
		fmt.Fprintf(&b, "| queue throughput | %d tasks created, claimed and resolved by %d concurrent clients vs %d bare bbolt transactions (3 a task), each fsynced, from %d goroutines, 2 interleaved rounds | %.0f tasks/s (%.1f s; queue CPU %.2f ms a task) | %.0f tasks/s (%.1f s) | ratio %.2f; %.1f × the real queue's ~%.0f tasks/s | ≥ 10 × the real queue |\n",
			q.Tasks, q.Clients, q.BaselineTransactions, q.Clients, *r.QueueTasksPerS, q.Seconds, 1000*q.QueueCPUSeconds/float64(q.Tasks),
			base, q.BaselineSeconds, *r.QueueTasksPerS/base, *r.QueueTasksPerS/realQueueTasksPerS, realQueueTasksPerS)
	}
	for _, l := range r.Samples.LivelogLoad {
		if len(l.DelayMs) == 0 {
			continue
		}
		_, hi := minMax(l.DelayMs)
		fmt.Fprintf(&b, "| live log, %d readers | %d task(s) × %d readers, %d lines each, one per 10 ms, container clock → each HTTP reader | p50 %.1f ms, p99 %.1f ms, max %.1f ms; %d readers short of a line; worker RSS peak %.1f MiB | | | p99 ≤ 5 ms, max ≤ 50 ms |\n",
			l.Tasks*l.ReadersPerTask, l.Tasks, l.ReadersPerTask, l.Lines, percentile(l.DelayMs, 0.5), percentile(l.DelayMs, 0.99), hi, l.ShortReaders, l.PeakRSSMiB)
	}
	for _, k := range []string{"queue_claim_resolve_p50_ms", "livelog_p99_ms_100_readers"} {
		if why, ok := r.NotMeasured[k]; ok {
			fmt.Fprintf(&b, "| %s | not measured: %s | | | | |\n", k, why)
		}
	}
	return b.String()
}
