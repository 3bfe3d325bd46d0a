package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"go.dockerworker.dev/docker-worker/worker/slugid"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// createTask submits a task running command on w's queue and returns its id.
func (e *env) createTask(ctx context.Context, w *workerProc, command []string, maxRunTime int) (string, error) {
	return e.createTaskPayload(ctx, w, map[string]any{"command": command}, maxRunTime)
}

// createTaskPayload submits a task whose payload is extra plus the image
// and maxRunTime.
func (e *env) createTaskPayload(ctx context.Context, w *workerProc, extra map[string]any, maxRunTime int) (string, error) {
	return e.createTaskFor(ctx, w.workerType, extra, maxRunTime)
}

// createTaskFor is createTaskPayload for a worker type whose worker may
// not run yet.
func (e *env) createTaskFor(ctx context.Context, workerType string, extra map[string]any, maxRunTime int) (string, error) {
	payload := map[string]any{"image": e.o.image, "maxRunTime": maxRunTime}
	for k, v := range extra {
		payload[k] = v
	}
	now := time.Now().UTC()
	ts := func(t time.Time) string { return t.Format("2006-01-02T15:04:05.000Z") }
	def := map[string]any{
		"provisionerId": "bench", "workerType": workerType,
		"created": ts(now), "deadline": ts(now.Add(2 * time.Hour)), "expires": ts(now.Add(24 * time.Hour)),
		"payload": payload,
		"metadata": map[string]any{"name": "bench", "description": "make bench", "owner": "bench@localhost",
			"source": "https://localhost/docker-worker/bench"},
	}
	body, err := json.Marshal(def)
	if err != nil {
		return "", err
	}
	id := slugid.Nice()
	if _, err := e.client.CreateTask(ctx, id, body); err != nil {
		return "", fmt.Errorf("create task: %w", err)
	}
	return id, nil
}

// waitResolved polls until run 0 of id is resolved and returns it.
func (e *env) waitResolved(ctx context.Context, id string, limit time.Duration) (tc.Run, error) {
	deadline := time.Now().Add(limit)
	for {
		resp, err := e.client.Status(ctx, id)
		if err != nil {
			return tc.Run{}, err
		}
		if runs := resp.Status.Runs; len(runs) > 0 {
			switch runs[0].State {
			case tc.StateCompleted, tc.StateFailed, tc.StateException:
				if runs[0].State != tc.StateCompleted {
					return runs[0], fmt.Errorf("task %s resolved %s/%s", id, runs[0].State, runs[0].ReasonResolved)
				}
				return runs[0], nil
			}
		}
		if time.Now().After(deadline) {
			return tc.Run{}, fmt.Errorf("task %s not resolved within %v", id, limit)
		}
		select {
		case <-ctx.Done():
			return tc.Run{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func dockerRun(ctx context.Context, image string, args ...string) error {
	cmd := exec.CommandContext(ctx, "docker", append([]string{"run", "--rm", image}, args...)...)
	cmd.Stderr = os.Stderr
	return cmd.Run()
}

// overhead interleaves n trivial worker tasks (createTask → resolved, the
// resolution time taken from the queue) with n bare `docker run --rm`.
func (e *env) overhead(ctx context.Context, r *results) error {
	w, err := e.startWorker(ctx, 1)
	if err != nil {
		return err
	}
	defer w.stop()
	// Warm up both paths once (image cache, first claim).
	if id, err := e.createTask(ctx, w, []string{"true"}, 60); err != nil {
		return err
	} else if _, err := e.waitResolved(ctx, id, 2*time.Minute); err != nil {
		return err
	}
	if err := dockerRun(ctx, e.o.image, "true"); err != nil {
		return err
	}
	w.takeTimings()
	for i := 0; i < e.o.overheadN; i++ {
		start := time.Now()
		id, err := e.createTask(ctx, w, []string{"true"}, 60)
		if err != nil {
			return err
		}
		run, err := e.waitResolved(ctx, id, 2*time.Minute)
		if err != nil {
			return err
		}
		r.Samples.WorkerTaskMs = append(r.Samples.WorkerTaskMs, ms(run.Resolved.Sub(start)))

		start = time.Now()
		if err := dockerRun(ctx, e.o.image, "true"); err != nil {
			return err
		}
		r.Samples.DockerRunMs = append(r.Samples.DockerRunMs, ms(time.Since(start)))
	}
	r.Samples.PhaseMs = w.takeTimings()
	return nil
}

// throughput times n trivial containers started c at a time by
// `xargs -P c docker run --rm`, then n trivial tasks at worker capacity c
// (first createTask to last resolution).
func (e *env) throughput(ctx context.Context, r *results) error {
	n, c := e.o.throughputN, e.o.capacity
	w, err := e.startWorker(ctx, c)
	if err != nil {
		return err
	}
	defer w.stop()
	time.Sleep(500 * time.Millisecond) // let the worker start claiming

	start := time.Now()
	shell := fmt.Sprintf("seq %d | xargs -P %d -I{} docker run --rm %s true", n, c, e.o.image)
	cmd := exec.CommandContext(ctx, "sh", "-c", shell)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("shell loop: %w", err)
	}
	r.Samples.ShellLoopSeconds = time.Since(start).Seconds()

	start = time.Now()
	ids := make([]string, n)
	for i := range ids {
		if ids[i], err = e.createTask(ctx, w, []string{"true"}, 60); err != nil {
			return err
		}
	}
	var last time.Time
	for _, id := range ids {
		run, err := e.waitResolved(ctx, id, 10*time.Minute)
		if err != nil {
			return err
		}
		if run.Resolved.After(last) {
			last = run.Resolved
		}
	}
	r.Samples.WorkerThroughputSeconds = last.Sub(start).Seconds()
	return nil
}

// memory samples the worker's RSS idle after start and while capacity
// tasks run at once.
func (e *env) memory(ctx context.Context, r *results) error {
	w, err := e.startWorker(ctx, e.o.capacity)
	if err != nil {
		return err
	}
	defer w.stop()
	time.Sleep(2 * time.Second)
	idle, err := rssMiB(w.cmd.Process.Pid)
	if err != nil {
		return err
	}
	r.Samples.RSSIdleMiB = idle

	var ids []string
	for range e.o.capacity {
		id, err := e.createTask(ctx, w, []string{"/bin/sh", "-c", "for i in $(seq 50); do echo line $i; sleep 0.1; done"}, 120)
		if err != nil {
			return err
		}
		ids = append(ids, id)
	}
	var mu sync.Mutex
	peak := 0.0
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if v, err := rssMiB(w.cmd.Process.Pid); err == nil {
				mu.Lock()
				peak = max(peak, v)
				mu.Unlock()
			}
		}
	})
	for _, id := range ids {
		if _, err := e.waitResolved(ctx, id, 5*time.Minute); err != nil {
			close(stop)
			wg.Wait()
			return err
		}
	}
	close(stop)
	wg.Wait()
	r.Samples.RSS4TasksMiB = peak
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// machine describes where the run happened.
func machine() string {
	out, _ := exec.Command("sh", "-c", "nproc; grep -m1 'model name' /proc/cpuinfo | cut -d: -f2; free -g | awk '/Mem:/{print $2\" GiB\"}'; docker version --format '{{.Server.Version}}'").Output()
	return strings.Join(strings.Fields(strings.ReplaceAll(string(out), "\n", " | ")), " ")
}

// cancellation times cancelTask → the task container gone, with the worker
// polling task status every statusPollMs and no Pulse consumer (the
// fallback path; pulseCancellation measures the Pulse one).
func (e *env) cancellation(ctx context.Context, r *results) error {
	w, err := e.startWorkerWith(ctx, 1, fmt.Sprintf("task: {statusPollInterval: %d}\n", e.o.statusPollMs))
	if err != nil {
		return err
	}
	defer w.stop()
	for range e.o.cancelN {
		_, d, err := e.timeCancel(ctx, w)
		if err != nil {
			return err
		}
		r.Samples.CancelMs = append(r.Samples.CancelMs, d)
	}
	return nil
}

// timeCancel starts a long task on w, waits for its container, cancels
// it and returns its id and the milliseconds from cancelTask to the
// container gone.
func (e *env) timeCancel(ctx context.Context, w *workerProc) (string, float64, error) {
	id, err := e.createTask(ctx, w, []string{"sleep", "120"}, 300)
	if err != nil {
		return "", 0, err
	}
	filter := "label=dev.dockerworker.task-id=" + id
	if err := waitContainers(ctx, filter, true); err != nil {
		return "", 0, err
	}
	start := time.Now()
	if _, err := e.client.CancelTask(ctx, id); err != nil {
		return "", 0, fmt.Errorf("cancel task: %w", err)
	}
	if err := waitContainers(ctx, filter, false); err != nil {
		return "", 0, err
	}
	return id, ms(time.Since(start)), nil
}

// waitContainers polls `docker ps` until a running container matching
// filter exists (present) or no container matching it is left (!present).
func waitContainers(ctx context.Context, filter string, present bool) error {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		args := []string{"ps", "-q", "--filter", filter}
		if !present {
			args = []string{"ps", "-aq", "--filter", filter}
		}
		out, err := exec.CommandContext(ctx, "docker", args...).Output()
		if err != nil {
			return fmt.Errorf("docker ps: %w", err)
		}
		if (len(strings.TrimSpace(string(out))) > 0) == present {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("container %s: still waiting for present=%v", filter, present)
}
