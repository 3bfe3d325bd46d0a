package status

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/features"
)

// host is the worker as the server sees it in Init: it keeps the hooks.
type host struct {
	observers   []features.Observer
	beforeClaim []features.BeforeClaimHook
}

func (h *host) BeforeClaim(f features.BeforeClaimHook) { h.beforeClaim = append(h.beforeClaim, f) }
func (h *host) AfterClaim(features.AfterClaimHook)     {}
func (h *host) BeforeFirstClaim(features.StartHook)    {}
func (h *host) Observe(o features.Observer)            { h.observers = append(h.observers, o) }
func (h *host) Runs() features.Runs                    { return nil }
func (h *host) emit(ev features.Event)                 { h.observers[0].RunEvent(ev) }
func (h *host) claimAttempt(ctx context.Context, n int) int {
	a, _ := h.beforeClaim[0](ctx, n)
	return a
}

func get(t *testing.T, url string) (string, http.Header) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, b)
	}
	return string(b), resp.Header
}

func newServer(t *testing.T, cfg Config) (*Server, *host) {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	h := &host{}
	if err := s.Init(t.Context(), h); err != nil {
		t.Fatal(err)
	}
	return s, h
}

// The summary shows the runs in progress with their phase and image, the
// last claim, capacity, reachability, disk and counters.
func TestSummary(t *testing.T) {
	var images sync.WaitGroup
	images.Add(1)
	s, h := newServer(t, Config{
		Version: "1.2.3", WorkerPoolID: "prov/type", WorkerGroup: "g", WorkerID: "w1", Capacity: 3,
		Volume:     t.TempDir(),
		PingQueue:  func(context.Context) error { return nil },
		PingDocker: func(context.Context) error { return errors.New("docker is down") },
		TaskImage: func(_ context.Context, taskID string) (string, error) {
			defer images.Done()
			return "ubuntu:" + taskID, nil
		},
	})
	if got := h.claimAttempt(t.Context(), 3); got != 3 {
		t.Errorf("the server lowered the claim to %d", got)
	}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a := features.RunRef{TaskID: "A", RunID: 0}
	b := features.RunRef{TaskID: "B", RunID: 2}
	h.emit(features.Event{Kind: features.Claimed, Run: a, At: t0})
	images.Wait()
	h.emit(features.Event{Kind: features.PhaseReached, Run: a, At: t0.Add(time.Second), Phase: features.PhaseImage})
	h.emit(features.Event{Kind: features.PhaseReached, Run: a, At: t0.Add(2 * time.Second), Phase: features.PhaseCreated})
	h.emit(features.Event{Kind: features.PhaseReached, Run: a, At: t0.Add(3 * time.Second), Phase: features.PhaseStarted})
	h.emit(features.Event{Kind: features.FirstOutput, Run: a, At: t0.Add(4 * time.Second)})
	images.Add(1)
	h.emit(features.Event{Kind: features.Claimed, Run: b, At: t0.Add(5 * time.Second)})
	images.Wait()
	c := features.RunRef{TaskID: "C", RunID: 0}
	images.Add(1)
	h.emit(features.Event{Kind: features.Claimed, Run: c, At: t0.Add(6 * time.Second)})
	images.Wait()
	h.emit(features.Event{Kind: features.Resolved, Run: c, At: t0.Add(7 * time.Second), State: "exception", Reason: "malformed-payload"})

	body, hdr := get(t, "http://"+s.Addr()+"/")
	if ct := hdr.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q", ct)
	}
	var sum Summary
	if err := json.Unmarshal([]byte(body), &sum); err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	if sum.Version != "1.2.3" || sum.WorkerPoolID != "prov/type" || sum.WorkerID != "w1" || sum.UptimeSeconds < 0 {
		t.Errorf("identity: %+v", sum)
	}
	if sum.Capacity != (Capacity{Total: 3, Running: 2, Free: 1}) {
		t.Errorf("capacity %+v", sum.Capacity)
	}
	want := []RunningRun{
		{TaskID: "A", RunID: 0, Phase: "firstOutput", Since: t0.Add(4 * time.Second), Image: "ubuntu:A"},
		{TaskID: "B", RunID: 2, Phase: "claimed", Since: t0.Add(5 * time.Second), Image: "ubuntu:B"},
	}
	if len(sum.Running) != 2 || sum.Running[0] != want[0] || sum.Running[1] != want[1] {
		t.Errorf("running %+v, want %+v", sum.Running, want)
	}
	if sum.LastClaim.Attempted == nil || sum.LastClaim.Claimed == nil || !sum.LastClaim.Claimed.Equal(t0.Add(6*time.Second)) ||
		sum.LastClaim.TaskID != "C" {
		t.Errorf("last claim %+v", sum.LastClaim)
	}
	if sum.Queue == nil || !sum.Queue.Reachable || sum.Docker == nil || sum.Docker.Reachable || sum.Docker.Error != "docker is down" {
		t.Errorf("queue %+v docker %+v", sum.Queue, sum.Docker)
	}
	if sum.Disk == nil || sum.Disk.FreeBytes <= 0 || sum.Disk.Error != "" {
		t.Errorf("disk %+v", sum.Disk)
	}
	if sum.Counters.Claimed != 3 || sum.Counters.Resolved["exception/malformed-payload"] != 1 || len(sum.Counters.Resolved) != 1 {
		t.Errorf("counters %+v", sum.Counters)
	}
}

// /metrics is Prometheus' text format with the worker's series.
func TestMetrics(t *testing.T) {
	s, h := newServer(t, Config{Version: "1.2.3", WorkerPoolID: "prov/type", WorkerID: "w1", Capacity: 2, Volume: t.TempDir()})
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a := features.RunRef{TaskID: "A"}
	h.emit(features.Event{Kind: features.Claimed, Run: a, At: t0})
	h.emit(features.Event{Kind: features.PhaseReached, Run: a, At: t0.Add(2 * time.Second), Phase: features.PhaseImage})
	h.emit(features.Event{Kind: features.PhaseReached, Run: a, At: t0.Add(3 * time.Second), Phase: features.PhaseCreated})
	h.emit(features.Event{Kind: features.Resolved, Run: a, At: t0.Add(4 * time.Second), State: "completed"})
	h.emit(features.Event{Kind: features.Claimed, Run: features.RunRef{TaskID: "B"}, At: t0})

	body, hdr := get(t, "http://"+s.Addr()+"/metrics")
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("content type %q", ct)
	}
	for _, want := range []string{
		"docker_worker_tasks_claimed_total 2\n",
		`docker_worker_tasks_resolved_total{reason="",state="completed"} 1` + "\n",
		"docker_worker_tasks_running 1\n",
		"docker_worker_capacity 2\n",
		`docker_worker_info{version="1.2.3",workerGroup="",workerId="w1",workerPoolId="prov/type"} 1` + "\n",
		`docker_worker_task_phase_duration_seconds_sum{phase="image"} 2` + "\n",
		`docker_worker_task_phase_duration_seconds_sum{phase="created"} 1` + "\n",
		`docker_worker_task_phase_duration_seconds_count{phase="created"} 1` + "\n",
		"# TYPE docker_worker_uptime_seconds gauge\n",
		"# TYPE docker_worker_volume_free_bytes gauge\n",
		"# TYPE go_goroutines gauge\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(body, "docker_worker_volume_free_bytes -1") {
		t.Error("free space unreadable")
	}
}

// Two servers in one process do not share series (no global registry),
// and a taken address is an error.
func TestServersAreIndependent(t *testing.T) {
	s1, h1 := newServer(t, Config{Capacity: 1})
	s2, _ := newServer(t, Config{Capacity: 5})
	h1.emit(features.Event{Kind: features.Claimed, Run: features.RunRef{TaskID: "A"}})
	m1, _ := get(t, "http://"+s1.Addr()+"/metrics")
	m2, _ := get(t, "http://"+s2.Addr()+"/metrics")
	if !strings.Contains(m1, "docker_worker_tasks_claimed_total 1\n") || !strings.Contains(m2, "docker_worker_tasks_claimed_total 0\n") {
		t.Errorf("claimed counters shared:\n%s\n---\n%s", m1, m2)
	}
	if _, err := New(Config{Listen: s1.Addr()}); err == nil || !strings.Contains(err.Error(), "status endpoint") {
		t.Errorf("listening twice on %s: %v", s1.Addr(), err)
	}
}

// First output told before the start it follows does not move the phase
// back; the start's duration is still measured.
func TestPhaseOnlyMovesForward(t *testing.T) {
	s, h := newServer(t, Config{Capacity: 1})
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a := features.RunRef{TaskID: "A"}
	h.emit(features.Event{Kind: features.Claimed, Run: a, At: t0})
	h.emit(features.Event{Kind: features.FirstOutput, Run: a, At: t0.Add(time.Second)})
	h.emit(features.Event{Kind: features.PhaseReached, Run: a, At: t0.Add(2 * time.Second), Phase: features.PhaseStarted})
	sum := s.Snapshot(t.Context())
	if len(sum.Running) != 1 || sum.Running[0].Phase != "firstOutput" || !sum.Running[0].Since.Equal(t0.Add(time.Second)) {
		t.Errorf("running %+v", sum.Running)
	}
	h.emit(features.Event{Kind: features.PhaseReached, Run: a, At: t0.Add(3 * time.Second), Phase: features.PhaseExited})
	if sum := s.Snapshot(t.Context()); sum.Running[0].Phase != "exited" {
		t.Errorf("running %+v", sum.Running)
	}
	m, _ := get(t, "http://"+s.Addr()+"/metrics")
	if !strings.Contains(m, `docker_worker_task_phase_duration_seconds_sum{phase="started"} 2`+"\n") {
		t.Errorf("started duration not measured from the claim:\n%s", m)
	}
}
