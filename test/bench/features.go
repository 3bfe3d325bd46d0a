package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.dockerworker.dev/docker-worker/schemas"
	"go.dockerworker.dev/docker-worker/worker/slugid"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// livelog runs a task that prints a line stamped with the container's clock
// (microseconds, from busybox adjtimex) every 10 ms, reads it through the
// live log URL while it runs, and records each line's delay from being
// written to being read. Container and reader share the host clock.
func (e *env) livelog(ctx context.Context, r *results) error {
	w, err := e.startWorker(ctx, 1)
	if err != nil {
		return err
	}
	defer w.stop()
	lines := e.o.livelogSeconds * 100
	script := fmt.Sprintf(`sleep 2; i=0; while [ $i -lt %d ]; do
  echo "LL $i $(adjtimex | awk '/tv_sec/{s=$2} /tv_usec/{u=$2} END{printf "%%d.%%06d", s, u}')"
  i=$((i+1)); usleep 10000; done`, lines)
	id, err := e.createTask(ctx, w, []string{"/bin/sh", "-c", script}, 120)
	if err != nil {
		return err
	}
	// Wait for the live log reference (created while the task runs).
	url := ""
	for start := time.Now(); url == ""; time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > time.Minute {
			return errNotMeasured("no live log reference artifact appeared while the task ran")
		}
		resp, err := e.client.ListArtifacts(ctx, id, 0, "")
		if err != nil {
			continue
		}
		for _, a := range resp.Artifacts {
			if a.Name == schemas.DefaultLog && a.StorageType == tc.StorageReference {
				url = e.client.ArtifactURL(id, 0, a.Name)
			}
		}
		if st, err := e.client.Status(ctx, id); err == nil && len(st.Status.Runs) > 0 && st.Status.Runs[0].State != tc.StateRunning && st.Status.Runs[0].State != tc.StatePending {
			return errNotMeasured("the task finished without a live log reference artifact")
		}
	}
	lw := &latencyWriter{}
	if _, err := e.client.Download(ctx, url, lw); err != nil {
		return fmt.Errorf("read live log: %w", err)
	}
	if _, err := e.waitResolved(ctx, id, 2*time.Minute); err != nil {
		return err
	}
	if len(lw.delays) < lines/2 {
		return fmt.Errorf("live log delivered %d of %d lines", len(lw.delays), lines)
	}
	r.Samples.LivelogDelayMs = lw.delays
	return nil
}

// latencyWriter timestamps each complete "LL <n> <unix.micro>" line on arrival.
type latencyWriter struct {
	buf    []byte
	delays []float64
}

func (l *latencyWriter) Write(p []byte) (int, error) {
	now := time.Now()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		f := strings.Fields(strings.TrimSpace(string(l.buf[:i])))
		l.buf = l.buf[i+1:]
		if len(f) == 3 && f[0] == "LL" {
			if ts, err := strconv.ParseFloat(f[2], 64); err == nil {
				sent := time.Unix(0, int64(ts*1e6)*1000)
				l.delays = append(l.delays, ms(now.Sub(sent)))
			}
		}
	}
	return len(p), nil
}

// artifactUpload uploads a file artifact of artifactMiB through the worker
// (timed by the worker's own artifacts phase: copy out of the container,
// spool, PUT) and PUTs a freshly written same-sized file of the same kind
// straight to a presigned URL of the same queue. Each kind runs
// artifactRounds interleaved rounds, with the page cache flushed (sync)
// before each side, since a 1 GiB write-back otherwise lands on whichever
// side runs next.
func (e *env) artifactUpload(ctx context.Context, r *results) error {
	size := int64(e.o.artifactMiB) << 20
	for _, kind := range []struct {
		name, gen string
		sample    *uploadSample
	}{
		{"public/big.zst", fmt.Sprintf("head -c %d /dev/urandom > /big.zst", size), &r.Samples.ArtifactIncompressible},
		{"public/big.txt", fmt.Sprintf("yes 'docker-worker compressible log line 0123456789' | head -c %d > /big.txt", size), &r.Samples.ArtifactText},
	} {
		kind.sample.Bytes = size
		for range max(e.o.artifactRounds, 1) {
			if err := e.uploadOnce(ctx, kind.name, kind.gen, size, kind.sample); err != nil {
				return err
			}
		}
	}
	return nil
}

type uploadSample struct {
	Bytes         int64     `json:"bytes"`
	WorkerSeconds []float64 `json:"worker_seconds"`
	RawPutSeconds []float64 `json:"raw_put_seconds"`
	RSSBeforeMiB  []float64 `json:"rss_before_mib"`
	RSSPeakMiB    []float64 `json:"rss_peak_mib"`
}

// growth is the largest RSS growth over the rounds.
func (u uploadSample) growth() float64 {
	g := 0.0
	for i := range u.RSSPeakMiB {
		g = max(g, u.RSSPeakMiB[i]-u.RSSBeforeMiB[i])
	}
	return g
}

func (e *env) uploadOnce(ctx context.Context, name, gen string, size int64, s *uploadSample) error {
	w, err := e.startWorker(ctx, 1)
	if err != nil {
		return err
	}
	defer w.stop()
	time.Sleep(time.Second)
	before, err := rssMiB(w.cmd.Process.Pid)
	if err != nil {
		return err
	}
	syscall.Sync()
	path := "/" + filepath.Base(name)
	id, err := e.createTaskPayload(ctx, w, map[string]any{
		"command":   []string{"/bin/sh", "-c", gen},
		"artifacts": map[string]any{name: map[string]any{"type": "file", "path": path}},
	}, 600)
	if err != nil {
		return err
	}
	peak := sampleRSS(w.cmd.Process.Pid)
	_, err = e.waitResolved(ctx, id, 15*time.Minute)
	peakMiB := peak()
	if err != nil {
		return err
	}
	timings := w.waitTimings(time.Minute)
	if len(timings) == 0 {
		return fmt.Errorf("no task timings from the worker")
	}
	arts, err := e.client.ListArtifacts(ctx, id, 0, "")
	if err != nil {
		return err
	}
	found := false
	for _, a := range arts.Artifacts {
		found = found || a.Name == name
	}
	if !found {
		return errNotMeasured("the worker uploaded no payload artifact")
	}
	syscall.Sync()
	raw, err := e.rawPut(ctx, size, strings.HasSuffix(name, ".txt"))
	if err != nil {
		return err
	}
	s.WorkerSeconds = append(s.WorkerSeconds, timings[len(timings)-1]["artifactsMs"]/1000)
	s.RawPutSeconds = append(s.RawPutSeconds, raw)
	s.RSSBeforeMiB = append(s.RSSBeforeMiB, before)
	s.RSSPeakMiB = append(s.RSSPeakMiB, peakMiB)
	return nil
}

// rawPut claims a throwaway task with the admin client, creates an s3
// artifact and PUTs a same-sized file to the presigned URL.
func (e *env) rawPut(ctx context.Context, size int64, text bool) (float64, error) {
	file := filepath.Join(e.dir, "rawput.bin")
	f, err := os.Create(file)
	if err != nil {
		return 0, err
	}
	var src io.Reader = io.LimitReader(rand.Reader, size)
	if text {
		src = io.LimitReader(repeat("docker-worker compressible log line 0123456789\n"), size)
	}
	if _, err := io.Copy(f, src); err != nil {
		f.Close()
		return 0, err
	}
	f.Close()
	defer os.Remove(file)

	wt := "bench-rawput"
	now := time.Now().UTC()
	ts := func(t time.Time) string { return t.Format("2006-01-02T15:04:05.000Z") }
	def, _ := json.Marshal(map[string]any{
		"provisionerId": "bench", "workerType": wt, "created": ts(now), "deadline": ts(now.Add(time.Hour)),
		"expires": ts(now.Add(24 * time.Hour)), "payload": map[string]any{},
		"metadata": map[string]any{"name": "rawput", "description": "raw PUT baseline", "owner": "bench@localhost", "source": "https://localhost/bench"},
	})
	taskID := slugid.Nice()
	if _, err := e.client.CreateTask(ctx, taskID, def); err != nil {
		return 0, fmt.Errorf("raw put task: %w", err)
	}
	claims, err := e.client.ClaimWork(ctx, "bench/"+wt, tc.ClaimWorkRequest{Tasks: 1, WorkerGroup: "bench", WorkerID: "rawput"})
	if err != nil || len(claims.Tasks) != 1 {
		return 0, fmt.Errorf("raw put claim: %v (%d tasks)", err, len(claims.Tasks))
	}
	rq := e.client.WithCredentials(claims.Tasks[0].Credentials)
	resp, err := rq.CreateArtifact(ctx, taskID, 0, "public/raw.bin", tc.S3Artifact(now.Add(time.Hour), "application/octet-stream"))
	if err != nil {
		return 0, err
	}
	start := time.Now()
	body, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer body.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, resp.PutURL, body)
	if err != nil {
		return 0, err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		return 0, fmt.Errorf("raw PUT: %s", res.Status)
	}
	secs := time.Since(start).Seconds()
	rq.ReportCompleted(ctx, taskID, 0)
	return secs, nil
}

type repeater struct {
	s   string
	off int
}

func repeat(s string) io.Reader { return &repeater{s: s} }

func (r *repeater) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.s[r.off:])
		n += c
		r.off = (r.off + c) % len(r.s)
	}
	return n, nil
}

// sampleRSS samples pid's RSS every 20 ms until the returned function is
// called, which returns the peak.
func sampleRSS(pid int) func() float64 {
	var mu sync.Mutex
	peak := 0.0
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if v, err := rssMiB(pid); err == nil {
				mu.Lock()
				peak = max(peak, v)
				mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return func() float64 {
		close(stop)
		<-done
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}

// notMeasured marks a benchmark the worker cannot run yet.
type notMeasured string

func (n notMeasured) Error() string { return string(n) }

func errNotMeasured(why string) error { return notMeasured(why) }

func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	i := int(p*float64(len(s)-1) + 0.5)
	return s[min(i, len(s)-1)]
}
