package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/features/backinglog"
	"go.dockerworker.dev/docker-worker/schemas"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockerfake"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// fakeQueue hands out pending claims and records every claimWork request
// together with how many tasks were running when it was made.
type fakeQueue struct {
	mu       sync.Mutex
	pending  []tc.TaskClaim
	requests []int
	busy     []int // running tasks at each request
	w        *Worker
	resolved map[string]string
	done     chan struct{}
	want     int
}

func (q *fakeQueue) ClaimWork(ctx context.Context, _ string, req tc.ClaimWorkRequest) (*tc.ClaimWorkResponse, error) {
	q.mu.Lock()
	q.requests = append(q.requests, req.Tasks)
	q.busy = append(q.busy, q.w.Running())
	n := min(req.Tasks, len(q.pending))
	out := q.pending[:n]
	q.pending = q.pending[n:]
	q.mu.Unlock()
	if n == 0 {
		select { // long-poll a little, like the real queue
		case <-ctx.Done():
		case <-time.After(5 * time.Millisecond):
		}
	}
	return &tc.ClaimWorkResponse{Tasks: out}, nil
}

func (q *fakeQueue) Status(_ context.Context, id string) (*tc.TaskStatusResponse, error) {
	return &tc.TaskStatusResponse{Status: tc.TaskStatus{TaskID: id, Runs: []tc.Run{{State: tc.StateRunning}}}}, nil
}

func (q *fakeQueue) resolve(taskID, state string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.resolved[taskID] = state
	if len(q.resolved) == q.want {
		close(q.done)
	}
}

type fakeRunQueue struct {
	q *fakeQueue
}

func (f fakeRunQueue) ReclaimTask(context.Context, string, int) (*tc.TaskReclaimResponse, error) {
	return nil, fmt.Errorf("unexpected reclaim")
}
func (f fakeRunQueue) ReportCompleted(_ context.Context, id string, _ int) (*tc.TaskStatusResponse, error) {
	f.q.resolve(id, "completed")
	return &tc.TaskStatusResponse{}, nil
}
func (f fakeRunQueue) ReportFailed(_ context.Context, id string, _ int) (*tc.TaskStatusResponse, error) {
	f.q.resolve(id, "failed")
	return &tc.TaskStatusResponse{}, nil
}
func (f fakeRunQueue) ReportException(_ context.Context, id string, _ int, reason string) (*tc.TaskStatusResponse, error) {
	f.q.resolve(id, "exception/"+reason)
	return &tc.TaskStatusResponse{}, nil
}
func (f fakeRunQueue) CreateArtifact(context.Context, string, int, string, tc.ArtifactRequest) (*tc.ArtifactResponse, error) {
	return &tc.ArtifactResponse{PutURL: "http://127.0.0.1:1/unused"}, nil
}
func (f fakeRunQueue) PutArtifact(ctx context.Context, _ string, open func(context.Context) (io.ReadCloser, error), _ int64, _, _ string) error {
	rc, err := open(ctx)
	if err != nil {
		return err
	}
	return rc.Close()
}
func (f fakeRunQueue) UploadObjectArtifact(ctx context.Context, _ string, _ int, u tc.ObjectUpload) error {
	rc, err := u.Open(ctx)
	if err != nil {
		return err
	}
	return rc.Close()
}

func claimFor(t *testing.T, id string) tc.TaskClaim {
	t.Helper()
	def := fmt.Sprintf(`{"payload":{"image":"busybox","command":["true"],"maxRunTime":600},"expires":%q,"deadline":%q}`,
		time.Now().Add(time.Hour).Format(time.RFC3339), time.Now().Add(time.Hour).Format(time.RFC3339))
	var td tc.TaskDefinition
	if err := json.Unmarshal([]byte(def), &td); err != nil {
		t.Fatal(err)
	}
	return tc.TaskClaim{Status: tc.TaskStatus{TaskID: id}, Task: td, TakenUntil: time.Now().Add(time.Hour)}
}

// taskMinutes is a fake Docker whose container for task<i> runs i+1
// minutes and exits 0.
func taskMinutes() *dockerfake.Fake {
	return &dockerfake.Fake{Script: func(spec docker.ContainerSpec) dockerfake.Script {
		var i int
		fmt.Sscanf(spec.Labels["dev.dockerworker.task-id"], "task%d", &i)
		return dockerfake.Script{Steps: []dockerfake.Step{{After: time.Duration(i+1) * time.Minute, Output: "output\r\n"}}}
	}}
}

// The claim loop asks for exactly the free capacity (at most 32) and never
// calls claimWork while every slot is busy.
func TestClaimLoopCapacityRule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		v, err := schemas.NewValidator()
		if err != nil {
			t.Fatal(err)
		}
		cfg := config.Default()
		cfg.Capacity = 3
		cfg.TaskQueue.PollInterval = 1000
		cfg.ProvisionerID, cfg.WorkerType, cfg.WorkerGroup, cfg.WorkerID = "p", "w", "g", "i"
		q := &fakeQueue{resolved: map[string]string{}, done: make(chan struct{}), want: 7}
		for i := range 7 {
			q.pending = append(q.pending, claimFor(t, fmt.Sprintf("task%d", i)))
		}
		d := taskMinutes()
		defer d.Close()
		w := New(Options{
			Config: cfg, Queue: q, Docker: d, Validator: v,
			RunQueue: func(tc.Credentials) RunQueue { return fakeRunQueue{q} },
			Features: []features.Feature{backinglog.New(t.TempDir()), fakeImage{}},
		})
		q.w = w
		ctx, cancel := context.WithCancel(t.Context())
		ran := make(chan error, 1)
		go func() { ran <- w.Run(ctx) }()
		select {
		case <-q.done:
		case <-time.After(time.Hour):
			t.Fatal("tasks did not all resolve")
		}
		cancel()
		if err := <-ran; err != nil {
			t.Fatal(err)
		}
		q.mu.Lock()
		defer q.mu.Unlock()
		for i, n := range q.requests {
			// Tasks only finish (never start) between the loop computing its free
			// slots and the request arriving, so n may trail the sampled free count.
			if free := cfg.Capacity - q.busy[i]; n > free || n <= 0 {
				t.Errorf("request %d asked for %d tasks with %d running (capacity %d)", i, n, q.busy[i], cfg.Capacity)
			}
		}
		for id, state := range q.resolved {
			if state != "completed" {
				t.Errorf("%s resolved %s", id, state)
			}
		}
		if got := d.Leaked(); len(got) != 0 {
			t.Errorf("containers never removed: %v", got)
		}
	})
}

// A claimWork request never asks for more than 32 tasks, however much
// capacity is free, and a full worker stops claiming.
func TestClaimRequestCappedAt32(t *testing.T) {
	for _, tt := range []struct {
		name     string
		capacity int
		pending  int
		want     []int // the first requests' sizes
	}{
		{name: "idle", capacity: 100, want: []int{32, 32, 32}},
		{name: "busy", capacity: 100, pending: 40, want: []int{32, 32, 32}},
		{name: "full", capacity: 40, pending: 40, want: []int{32, 8}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				v, err := schemas.NewValidator()
				if err != nil {
					t.Fatal(err)
				}
				cfg := config.Default()
				cfg.Capacity = tt.capacity
				cfg.TaskQueue.PollInterval = 1
				cfg.ProvisionerID, cfg.WorkerType, cfg.WorkerGroup, cfg.WorkerID = "p", "w", "g", "i"
				q := &fakeQueue{resolved: map[string]string{}, done: make(chan struct{}), want: tt.pending}
				for i := range tt.pending {
					q.pending = append(q.pending, claimFor(t, fmt.Sprintf("task%d", i)))
				}
				d := &dockerfake.Fake{Script: func(docker.ContainerSpec) dockerfake.Script {
					return dockerfake.Script{RunUntilKilled: true}
				}}
				defer d.Close()
				w := New(Options{Config: cfg, Queue: q, Docker: d, Validator: v,
					RunQueue: func(tc.Credentials) RunQueue { return fakeRunQueue{q} },
					Features: []features.Feature{fakeImage{}}})
				q.w = w
				ran := make(chan error, 1)
				go func() { ran <- w.Run(t.Context()) }()
				time.Sleep(time.Second)
				synctest.Wait()

				q.mu.Lock()
				got := slices.Clone(q.requests)
				q.mu.Unlock()
				if len(got) < len(tt.want) {
					t.Fatalf("claimWork requests: got %v, want at least %v", got, tt.want)
				}
				if diff := cmp.Diff(tt.want, got[:len(tt.want)]); diff != "" {
					t.Errorf("first claimWork requests (-want +got):\n%s", diff)
				}
				for i, n := range got {
					if n != min(32, tt.capacity-q.busy[i]) {
						t.Errorf("request %d asked for %d tasks with %d of %d running, want min(32, free)", i, n, q.busy[i], tt.capacity)
					}
				}
				if tt.capacity == tt.pending && len(got) != len(tt.want) {
					t.Errorf("a full worker claimed again: requests %v", got)
				}

				// An abort kills the containers and resolves every task.
				w.Stop(StopImmediate)
				if err := <-ran; err != nil {
					t.Fatal(err)
				}
				if got := len(d.Kills()); got != tt.pending {
					t.Errorf("killed %d containers, want %d", got, tt.pending)
				}
				if got := len(q.resolved); got != tt.pending {
					t.Errorf("resolved %d tasks, want %d", got, tt.pending)
				}
				for id, state := range q.resolved {
					if state != "exception/worker-shutdown" {
						t.Errorf("%s resolved %s, want exception/worker-shutdown", id, state)
					}
				}
				if got := d.Leaked(); len(got) != 0 {
					t.Errorf("containers never removed: %v", got)
				}
			})
		})
	}
}

func TestClaimBackoff(t *testing.T) {
	base, limit := 100*time.Millisecond, time.Second
	for n, want := range map[int]time.Duration{1: base, 2: 2 * base, 3: 4 * base, 10: limit} {
		for range 20 {
			got := claimBackoff(n, base, limit)
			if got < want*3/4 || got > want*5/4 {
				t.Errorf("claimBackoff(%d) = %v, want %v ±25%%", n, got, want)
			}
		}
	}
}

// fakeImage is an always-on feature providing every registry image.
type fakeImage struct{}

func (fakeImage) Name() string                                        { return "image" }
func (fakeImage) AlwaysOn() bool                                      { return true }
func (fakeImage) Owns() []string                                      { return []string{"image.docker-image"} }
func (fakeImage) NewTask(features.Task) (features.TaskFeature, error) { return fakeImage{}, nil }
func (fakeImage) ProvideImage(context.Context, *features.ImageRequest) (features.Image, error) {
	return features.Image{ID: "sha256:fake"}, nil
}
