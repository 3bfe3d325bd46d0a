package worker

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"go.dockerworker.dev/docker-worker/worker/tc"
)

// statusAnswer is a StatusQueue that answers with a fixed error (nil: a
// running run) and counts its calls.
type statusAnswer struct {
	err   error
	calls int
}

func (s *statusAnswer) Status(context.Context, string) (*tc.TaskStatusResponse, error) {
	s.calls++
	if s.err != nil {
		return nil, s.err
	}
	return &tc.TaskStatusResponse{}, nil
}

var forbidden = &tc.APIError{StatusCode: http.StatusForbidden, Code: "InsufficientScopes"}

// The worker's client is asked first; a 403 moves polling to the anonymous
// client for good; when that is refused too polling stops with one warning.
func TestStatusPollerFallsBack(t *testing.T) {
	own := &statusAnswer{err: forbidden}
	anon := &statusAnswer{}
	var logs bytes.Buffer
	p := newStatusPoller(ownQueue{own}, anon, slog.New(slog.NewTextHandler(&logs, nil)))
	for range 3 {
		if _, err := p.status(t.Context(), "t"); err != nil {
			t.Fatalf("status: %v", err)
		}
	}
	if own.calls != 1 || anon.calls != 3 {
		t.Errorf("calls: own %d, anonymous %d; want 1 and 3", own.calls, anon.calls)
	}
	if logs.Len() != 0 {
		t.Errorf("warned while the anonymous client answers:\n%s", logs.String())
	}

	anon.err = forbidden
	for range 3 {
		if _, err := p.status(t.Context(), "t"); err == nil {
			t.Fatal("no error once both are refused")
		}
	}
	if p.usable() {
		t.Error("poller still usable after both clients were refused")
	}
	if n := strings.Count(logs.String(), "cannot poll task status"); n != 1 {
		t.Errorf("%d warnings, want exactly one:\n%s", n, logs.String())
	}
	if anon.calls != 4 {
		t.Errorf("anonymous client asked %d times, want 4 (none after the refusal)", anon.calls)
	}
}

// Other errors (5xx, network) neither move to the next client nor stop
// polling.
func TestStatusPollerKeepsOnOtherErrors(t *testing.T) {
	own := &statusAnswer{err: errors.New("connection refused")}
	anon := &statusAnswer{}
	p := newStatusPoller(ownQueue{own}, anon, slog.New(slog.DiscardHandler))
	for range 2 {
		if _, err := p.status(t.Context(), "t"); err == nil {
			t.Fatal("error swallowed")
		}
	}
	if own.calls != 2 || anon.calls != 0 || !p.usable() {
		t.Errorf("own %d, anonymous %d, usable %v", own.calls, anon.calls, p.usable())
	}
}

// ownQueue turns a StatusQueue into a Queue for the poller.
type ownQueue struct{ StatusQueue }

func (ownQueue) ClaimWork(context.Context, string, tc.ClaimWorkRequest) (*tc.ClaimWorkResponse, error) {
	return nil, errors.New("not used")
}
