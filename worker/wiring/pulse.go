package wiring

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/pulse"
)

// pulseExtension stops a run as soon as the queue's task-exception message
// about it arrives on Pulse; status polling stays the fallback for
// messages missed while the broker was away.
type pulseExtension struct {
	newConsumer func(pulse.ExceptionFunc) (*pulse.Consumer, error)
	logger      *slog.Logger

	mu     sync.Mutex
	stop   context.CancelFunc
	done   chan struct{}
	closed bool
}

var _ features.Extension = (*pulseExtension)(nil)

// newPulseExtension checks cfg.Pulse; it connects only in Init.
func newPulseExtension(cfg *config.Config, logger *slog.Logger) (*pulseExtension, error) {
	pcfg := pulse.Config{
		URL:         cfg.Pulse.URL,
		WorkerGroup: cfg.WorkerGroup,
		WorkerID:    cfg.WorkerID,
		Logger:      logger.With("component", "pulse"),
	}
	if _, err := pulse.New(pcfg, func(string, int, string) {}); err != nil {
		return nil, fmt.Errorf("pulse.url: %w", err)
	}
	return &pulseExtension{
		newConsumer: func(on pulse.ExceptionFunc) (*pulse.Consumer, error) { return pulse.New(pcfg, on) },
		logger:      logger,
	}, nil
}

// Init starts the consumer; it runs until the worker's context ends or
// close is called, whichever comes first.
func (e *pulseExtension) Init(ctx context.Context, h features.Host) error {
	runs := h.Runs()
	c, err := e.newConsumer(func(taskID string, runID int, reason string) {
		cause := fmt.Errorf("the queue resolved run %d as exception/%s (Pulse task-exception message)", runID, reason)
		if runs.Cancel(taskID, runID, cause) {
			e.logger.Info("cancel task", "taskId", taskID, "runId", runID, "state", "exception",
				"reasonResolved", reason, "source", "pulse")
		}
	})
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || e.done != nil {
		return nil
	}
	ctx, e.stop = context.WithCancel(ctx)
	e.done = make(chan struct{})
	go func() {
		defer close(e.done)
		c.Run(ctx)
	}()
	return nil
}

// close stops the consumer and waits for it to disconnect.
func (e *pulseExtension) close() error {
	e.mu.Lock()
	e.closed = true
	stop, done := e.stop, e.done
	e.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
	return nil
}
