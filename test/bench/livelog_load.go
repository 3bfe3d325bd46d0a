package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.dockerworker.dev/docker-worker/schemas"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// loadOptions are the flags of the rows under load (queue and live log).
type loadOptions struct {
	// queueRounds sequential claim + resolve round trips; queueTasks tasks
	// created, claimed and resolved by queueClients clients.
	queueRounds, queueTasks, queueClients int
	// livelogReaders read the one task of the first live-log load row;
	// the second runs livelogTasks tasks with livelogReaders/livelogTasks
	// readers each.
	livelogReaders, livelogTasks int
	// only, when set, runs just these rows (comma-separated: queue,
	// livelog-load) and writes only their figures.
	only string
}

// livelogLoadScenario is one live-log load row: Tasks tasks at once, each
// read by ReadersPerTask readers following its live log.
type livelogLoadScenario struct {
	Tasks          int `json:"tasks"`
	ReadersPerTask int `json:"readers_per_task"`
	// Lines each task printed; every reader's delays are in DelayMs.
	Lines   int       `json:"lines"`
	DelayMs []float64 `json:"delay_ms"`
	// Readers that got fewer than every line (they must all get all).
	ShortReaders int `json:"short_readers"`
	// PeakRSSMiB is the worker's peak RSS while the readers read.
	PeakRSSMiB float64 `json:"peak_rss_mib"`
}

// livelogLoad runs the live-log latency task (a line stamped with the
// container's clock every 10 ms) under many readers: first one task with
// livelogReaders readers, then livelogTasks tasks sharing as many readers.
// Each reader measures, per line, container clock → arrival, as the
// single-reader row does.
func (e *env) livelogLoad(ctx context.Context, r *results) error {
	tasks := max(e.o.livelogTasks, 1)
	for _, sc := range []struct{ tasks, readers int }{
		{1, e.o.livelogReaders},
		{tasks, max(e.o.livelogReaders/tasks, 1)},
	} {
		s, err := e.livelogLoadOnce(ctx, sc.tasks, sc.readers)
		if err != nil {
			return err
		}
		r.Samples.LivelogLoad = append(r.Samples.LivelogLoad, s)
	}
	return nil
}

func (e *env) livelogLoadOnce(ctx context.Context, tasks, readers int) (livelogLoadScenario, error) {
	s := livelogLoadScenario{Tasks: tasks, ReadersPerTask: readers, Lines: e.o.livelogSeconds * 100}
	w, err := e.startWorker(ctx, tasks)
	if err != nil {
		return s, err
	}
	defer w.stop()
	// A longer head start than the single-reader row: every reader must
	// be attached before the first line.
	script := fmt.Sprintf(`sleep 4; i=0; while [ $i -lt %d ]; do
  echo "LL $i $(adjtimex | awk '/tv_sec/{s=$2} /tv_usec/{u=$2} END{printf "%%d.%%06d", s, u}')"
  i=$((i+1)); usleep 10000; done`, s.Lines)
	ids := make([]string, tasks)
	for i := range ids {
		if ids[i], err = e.createTask(ctx, w, []string{"/bin/sh", "-c", script}, 180); err != nil {
			return s, err
		}
	}
	urls := make([]string, tasks)
	for i, id := range ids {
		if urls[i], err = e.liveLogURL(ctx, id); err != nil {
			return s, err
		}
	}
	peak := sampleRSS(w.cmd.Process.Pid)
	var mu sync.Mutex
	var wg sync.WaitGroup
	var readErr error
	for _, url := range urls {
		for range readers {
			wg.Go(func() {
				lw := &latencyWriter{}
				_, err := e.client.Download(ctx, url, lw)
				mu.Lock()
				defer mu.Unlock()
				if err != nil && readErr == nil {
					readErr = fmt.Errorf("read live log: %w", err)
				}
				if len(lw.delays) < s.Lines {
					s.ShortReaders++
				}
				s.DelayMs = append(s.DelayMs, lw.delays...)
			})
		}
	}
	wg.Wait()
	s.PeakRSSMiB = peak()
	if readErr != nil {
		return s, readErr
	}
	for _, id := range ids {
		if _, err := e.waitResolved(ctx, id, 2*time.Minute); err != nil {
			return s, err
		}
	}
	return s, nil
}

// liveLogURL waits for the live log reference artifact of run 0 of id and
// returns its URL.
func (e *env) liveLogURL(ctx context.Context, id string) (string, error) {
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > time.Minute {
			return "", errNotMeasured("no live log reference artifact appeared while the task ran")
		}
		if err := ctx.Err(); err != nil {
			return "", err
		}
		resp, err := e.client.ListArtifacts(ctx, id, 0, "")
		if err != nil {
			continue
		}
		for _, a := range resp.Artifacts {
			if a.Name == schemas.DefaultLog && a.StorageType == tc.StorageReference {
				return e.client.ArtifactURL(id, 0, a.Name), nil
			}
		}
	}
}
