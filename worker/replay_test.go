package worker

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/schemas"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockerfake"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// recorder is a feature whose log sink keeps everything it receives.
type recorder struct {
	name     string
	alwaysOn bool
	mu       sync.Mutex
	buf      bytes.Buffer
}

func (f *recorder) Name() string         { return f.name }
func (f *recorder) AlwaysOn() bool       { return f.alwaysOn }
func (f *recorder) DefaultEnabled() bool { return true }
func (f *recorder) NewTask(features.Task) (features.TaskFeature, error) {
	return f, nil
}
func (f *recorder) Open(_ context.Context, _ *features.OpenRequest, resp *features.OpenResponse) error {
	resp.LogSinks = append(resp.LogSinks, f)
	return nil
}
func (f *recorder) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.buf.Write(p)
}
func (f *recorder) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.buf.String()
}

// A payload feature, opened after validation, still receives the whole
// task log from its first byte: the header is replayed into its sinks.
func TestLateSinksGetTheWholeLog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		v, err := schemas.NewValidator()
		if err != nil {
			t.Fatal(err)
		}
		cfg := config.Default()
		cfg.TaskQueue.PollInterval = 1
		cfg.ProvisionerID, cfg.WorkerType, cfg.WorkerGroup, cfg.WorkerID = "p", "w", "g", "i"
		q := &fakeQueue{resolved: map[string]string{}, done: make(chan struct{}), want: 1}
		q.pending = []tc.TaskClaim{claimFor(t, "task0")}
		d := &dockerfake.Fake{Script: func(docker.ContainerSpec) dockerfake.Script {
			return dockerfake.Script{Steps: []dockerfake.Step{{Output: "output\r\n"}}}
		}}
		defer d.Close()
		always := &recorder{name: "always", alwaysOn: true}
		late := &recorder{name: "localLiveLog"}
		w := New(Options{
			Config: cfg, Queue: q, Docker: d, Validator: v,
			RunQueue: func(tc.Credentials) RunQueue { return fakeRunQueue{q} },
			Features: []features.Feature{always, fakeImage{}, late},
		})
		q.w = w
		ctx, cancel := context.WithCancel(t.Context())
		ran := make(chan error, 1)
		go func() { ran <- w.Run(ctx) }()
		select {
		case <-q.done:
		case <-time.After(30 * time.Second):
			t.Fatal("task did not resolve")
		}
		cancel()
		<-ran
		full := always.String()
		if !strings.Contains(full, "Task ID: task0") || !strings.Contains(full, "output\r\n") {
			t.Fatalf("full log:\n%s", full)
		}
		if got := late.String(); got != full {
			t.Errorf("late sink got:\n%s\nwant the whole log:\n%s", got, full)
		}
	})
}
