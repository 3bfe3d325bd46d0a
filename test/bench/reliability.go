package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// pulseCancellation times cancelTask → the task container gone for a
// worker that hears of cancellations only through Pulse: it consumes the
// queue's task-exception messages and polls no status
// (task.statusPollInterval 0). Each sample must be stopped by a Pulse
// message (the worker's `cancel task` record with source pulse).
func (e *env) pulseCancellation(ctx context.Context, r *results) error {
	if e.o.pulseURL == "" {
		return errNotMeasured(`skipped (-pulse-url "")`)
	}
	if e.o.pulseCancelN <= 0 {
		return errNotMeasured("skipped (-pulse-cancel-n 0)")
	}
	if err := dialBroker(ctx, e.o.pulseURL); err != nil {
		return errNotMeasured(fmt.Sprintf("no Pulse broker (test/setup-env.sh starts one): %v", err))
	}
	w, err := e.startWorkerWith(ctx, 1, fmt.Sprintf("pulse: {url: %q}\ntask: {statusPollInterval: 0}\n", e.o.pulseURL))
	if err != nil {
		return err
	}
	defer w.stop()
	if _, err := w.waitRecord(ctx, "pulse: listening for cancellations", nil, time.Minute); err != nil {
		return err
	}
	for range e.o.pulseCancelN {
		id, d, err := e.timeCancel(ctx, w)
		if err != nil {
			return err
		}
		byPulse := func(rec logRecord) bool { return rec.Attrs["taskId"] == id && rec.Attrs["source"] == "pulse" }
		if _, err := w.waitRecord(ctx, "cancel task", byPulse, 10*time.Second); err != nil {
			return fmt.Errorf("task %s: the container went away, but not through Pulse: %w", id, err)
		}
		r.Samples.PulseCancelMs = append(r.Samples.PulseCancelMs, d)
	}
	return nil
}

// dialBroker checks that something listens at the broker URL's address.
func dialBroker(ctx context.Context, raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("the broker URL does not parse")
	}
	host := u.Host
	if u.Port() == "" {
		port := "5672"
		if u.Scheme == "amqps" {
			port = "5671"
		}
		host = net.JoinHostPort(u.Hostname(), port)
	}
	d := net.Dialer{Timeout: 2 * time.Second}
	c, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return fmt.Errorf("%s does not answer: %w", host, err)
	}
	return c.Close()
}

// crashOrphans is how many long tasks the crashed worker leaves running.
const crashOrphans = 4

// crashRecovery compares, over crashRounds interleaved rounds, the time
// from process start to the first "claimed task" record of a worker
// restarted on the state directory of a SIGKILLed process that left
// crashOrphans running tasks with that of a fresh worker (empty state
// directory) with one task pending. It also checks that none of the
// killed process's containers is left once the restarted worker claims.
func (e *env) crashRecovery(ctx context.Context, r *results) error {
	if e.o.crashRounds <= 0 {
		return errNotMeasured("skipped (-crash-rounds 0)")
	}
	s := &r.Samples
	for range e.o.crashRounds {
		clean, err := e.firstClaimClean(ctx)
		if err != nil {
			return fmt.Errorf("clean start: %w", err)
		}
		s.FirstClaimCleanMs = append(s.FirstClaimCleanMs, clean)
		c, err := e.firstClaimAfterCrash(ctx)
		if err != nil {
			return fmt.Errorf("start after a crash: %w", err)
		}
		s.FirstClaimAfterCrashMs = append(s.FirstClaimAfterCrashMs, c.firstClaimMs)
		s.CrashLeftoverContainers = append(s.CrashLeftoverContainers, c.leftover)
		s.CrashContainersRemoved = append(s.CrashContainersRemoved, c.removed)
		s.CrashLeftAfterStop = append(s.CrashLeftAfterStop, c.leftAfterStop)
	}
	return nil
}

// firstClaimClean starts a fresh worker with one task already pending and
// returns process start → its first "claimed task" record, in ms.
func (e *env) firstClaimClean(ctx context.Context) (float64, error) {
	path, wt, err := e.writeWorkerConfig(workerSpec{capacity: crashOrphans})
	if err != nil {
		return 0, err
	}
	id, err := e.createTaskFor(ctx, wt, map[string]any{"command": []string{"true"}}, 60)
	if err != nil {
		return 0, err
	}
	w, err := e.launchWorker(ctx, path, wt)
	if err != nil {
		e.cancelTasks(ctx, []string{id})
		return 0, err
	}
	defer w.stop()
	claimed, err := w.waitRecord(ctx, "claimed task", nil, 2*time.Minute)
	if err != nil {
		e.cancelTasks(ctx, []string{id})
		return 0, err
	}
	if _, err := e.waitResolved(ctx, id, 2*time.Minute); err != nil {
		e.cancelTasks(ctx, []string{id})
		return 0, err
	}
	return ms(claimed.Time.Sub(w.started)), nil
}

// crashSample is one round of the worker restarted after a crash.
type crashSample struct {
	firstClaimMs float64
	// leftover counts the killed process's containers that still existed
	// at the restarted worker's first claim; removed is what the
	// restarted worker's recovery record says it removed; leftAfterStop
	// counts the worker's containers left once the bench cancelled the
	// tasks and stopped the restarted worker with SIGTERM.
	leftover, removed, leftAfterStop int
}

// firstClaimAfterCrash starts a worker (its own worker id and state
// directory), lets it run crashOrphans long tasks, SIGKILLs it, starts it
// again on the same config and times process start → first "claimed task"
// (a retry of one of the orphaned runs, once recovery resolved them).
// Cleanup waits for the retries to run, cancels the tasks and stops the
// restarted worker with SIGTERM, which removes the retries' containers.
func (e *env) firstClaimAfterCrash(ctx context.Context) (c crashSample, err error) {
	// A worker id of its own, so the label filter sees only this worker.
	path, wt, err := e.writeWorkerConfig(workerSpec{capacity: crashOrphans, ownWorkerID: true})
	if err != nil {
		return c, err
	}
	label := "label=dev.dockerworker.worker-id=" + wt

	var ids []string
	var live *workerProc
	defer func() {
		e.cancelTasks(ctx, ids)
		if live != nil {
			live.terminate()
		}
		// The worker removes its containers when it stops; what is left
		// (a failed round, or a worker that did not) is counted and
		// removed here, so the bench leaves nothing behind.
		left, lerr := containerIDs(ctx, label, true)
		if lerr != nil {
			err = errors.Join(err, lerr)
			return
		}
		c.leftAfterStop = len(left)
		if len(left) > 0 {
			fmt.Fprintf(os.Stderr, "bench: %d containers of worker %s left after it stopped; removing them\n", len(left), wt)
			if rerr := exec.CommandContext(ctx, "docker", append([]string{"rm", "-f"}, left...)...).Run(); rerr != nil {
				err = errors.Join(err, fmt.Errorf("remove leftover containers: %w", rerr))
			}
		}
	}()

	if live, err = e.launchWorker(ctx, path, wt); err != nil {
		return c, err
	}
	for range crashOrphans {
		id, err := e.createTaskFor(ctx, wt, map[string]any{"command": []string{"sleep", "600"}}, 900)
		if err != nil {
			return c, err
		}
		ids = append(ids, id)
	}
	if err := waitRunning(ctx, label, nil, crashOrphans); err != nil {
		return c, err
	}
	orphans, err := containerIDs(ctx, label, false)
	if err != nil {
		return c, err
	}
	live.kill()
	live = nil

	if live, err = e.launchWorker(ctx, path, wt); err != nil {
		return c, err
	}
	claimed, err := live.waitRecord(ctx, "claimed task", nil, 5*time.Minute)
	if err != nil {
		return c, err
	}
	c.firstClaimMs = ms(claimed.Time.Sub(live.started))
	all, err := containerIDs(ctx, label, true)
	if err != nil {
		return c, err
	}
	for _, id := range all {
		if slices.Contains(orphans, id) {
			c.leftover++
		}
	}
	for _, rec := range live.recordsOf("recovered what a previous process left") {
		if n, ok := rec.Attrs["containersRemoved"].(float64); ok {
			c.removed += int(n)
		}
	}
	// Let the retries start before they are cancelled and the worker is
	// stopped, so the cleanup stops running containers.
	if err := waitRunning(ctx, label, orphans, crashOrphans); err != nil {
		return c, err
	}
	return c, nil
}

// containerIDs lists the full ids of the containers matching filter:
// running ones, or all of them when all is set.
func containerIDs(ctx context.Context, filter string, all bool) ([]string, error) {
	args := []string{"ps", "-q", "--no-trunc", "--filter", filter}
	if all {
		args = append(args, "-a")
	}
	out, err := exec.CommandContext(ctx, "docker", args...).Output()
	if err != nil {
		return nil, fmt.Errorf("docker ps: %w", err)
	}
	return strings.Fields(string(out)), nil
}

// waitRunning waits up to 2 minutes until n containers matching filter
// and not in old run.
func waitRunning(ctx context.Context, filter string, old []string, n int) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ids, err := containerIDs(ctx, filter, false)
		if err != nil {
			return err
		}
		running := 0
		for _, id := range ids {
			if !slices.Contains(old, id) {
				running++
			}
		}
		if running >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d containers running after 2 minutes", running, n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// cancelTasks cancels the bench's tasks; a failure is only reported, as
// it is cleanup.
func (e *env) cancelTasks(ctx context.Context, ids []string) {
	for _, id := range ids {
		if _, err := e.client.CancelTask(ctx, id); err != nil {
			fmt.Fprintf(os.Stderr, "bench: cleanup: cancel task %s: %v\n", id, err)
		}
	}
}
