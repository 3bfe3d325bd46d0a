package wiring

import (
	"context"
	"encoding/json"
	"go.dockerworker.dev/docker-worker/worker/pulse/pulsetest"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/pulse"
)

// fakeHost records what an extension registers; its runs are fakeRuns.
type fakeHost struct{ runs *fakeRuns }

func (fakeHost) BeforeClaim(features.BeforeClaimHook) {}
func (fakeHost) AfterClaim(features.AfterClaimHook)   {}
func (fakeHost) BeforeFirstClaim(features.StartHook)  {}
func (fakeHost) Observe(features.Observer)            {}
func (h fakeHost) Runs() features.Runs                { return h.runs }

type fakeRuns struct {
	mu       sync.Mutex
	held     map[features.RunRef]bool
	canceled chan features.RunRef
	causes   []error
}

func (r *fakeRuns) Cancel(taskID string, runID int, cause error) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	ref := features.RunRef{TaskID: taskID, RunID: runID}
	if !r.held[ref] {
		return false
	}
	delete(r.held, ref)
	r.causes = append(r.causes, cause)
	r.canceled <- ref
	return true
}

func (r *fakeRuns) List() []features.RunRef { return nil }

func TestPulseExtensionBadURL(t *testing.T) {
	cfg := config.Default()
	cfg.WorkerGroup, cfg.WorkerID = "wg", "w1"
	cfg.Pulse.URL = "http://u:hunter2@broker/"
	_, err := newPulseExtension(cfg, slog.New(slog.DiscardHandler))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("got %v, want an error without the password", err)
	}
}

func TestPulseExtensionCancelsHeldRuns(t *testing.T) {
	broker := pulsetest.Require(t)
	cfg := config.Default()
	cfg.WorkerGroup, cfg.WorkerID = "wg-"+t.Name(), "w1"
	cfg.Pulse.URL = broker
	var logs strings.Builder
	var logMu sync.Mutex
	logger := slog.New(slog.NewJSONHandler(lockedWriter{&logMu, &logs}, nil))
	e, err := newPulseExtension(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	runs := &fakeRuns{held: map[features.RunRef]bool{{TaskID: "held", RunID: 1}: true}, canceled: make(chan features.RunRef, 4)}
	if err := e.Init(t.Context(), fakeHost{runs}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.close() })

	conn, err := amqp.Dial(broker)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare(pulse.Exchange, "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	publish := func(taskID string, runID int) {
		t.Helper()
		body, _ := json.Marshal(map[string]any{
			"version": 1, "runId": runID, "workerGroup": cfg.WorkerGroup, "workerId": cfg.WorkerID,
			"status": map[string]any{"taskId": taskID, "runs": []map[string]any{{"reasonResolved": "canceled"}, {"reasonResolved": "canceled"}}},
		})
		key := "primary." + taskID + "." + string(rune('0'+runID)) + "." + cfg.WorkerGroup + "." + cfg.WorkerID + ".p.w.s." + taskID + "._"
		if err := ch.PublishWithContext(t.Context(), pulse.Exchange, key, false, false, amqp.Publishing{Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	// The consumer binds asynchronously: publish until the held run is
	// cancelled, a message for a run not held in between.
	deadline := time.Now().Add(20 * time.Second)
	for got := false; !got; {
		if time.Now().After(deadline) {
			t.Fatal("the held run was not cancelled")
		}
		publish("not-held", 0)
		publish("held", 1)
		select {
		case ref := <-runs.canceled:
			if ref != (features.RunRef{TaskID: "held", RunID: 1}) {
				t.Fatalf("cancelled %+v", ref)
			}
			got = true
		case <-time.After(200 * time.Millisecond):
		}
	}
	runs.mu.Lock()
	cause := runs.causes[0]
	runs.mu.Unlock()
	if !strings.Contains(cause.Error(), "exception/canceled") {
		t.Errorf("got cause %v", cause)
	}
	if err := e.close(); err != nil {
		t.Fatal(err)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(logs.String(), `"msg":"cancel task","taskId":"held","runId":1`) {
		t.Errorf("no cancel task record in:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), `"taskId":"not-held"`) {
		t.Errorf("a run the worker does not hold was logged:\n%s", logs.String())
	}
}

func TestPulseExtensionStopsWithItsContext(t *testing.T) {
	broker := pulsetest.Require(t)
	cfg := config.Default()
	cfg.WorkerGroup, cfg.WorkerID = "wg", "w1"
	cfg.Pulse.URL = broker
	e, err := newPulseExtension(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	if err := e.Init(ctx, fakeHost{&fakeRuns{}}); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-e.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the consumer outlived the worker's context")
	}
	if err := e.close(); err != nil {
		t.Fatal(err)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
