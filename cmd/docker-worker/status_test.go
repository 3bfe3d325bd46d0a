package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/worker/status"
)

// statusHost is the worker host as the status server sees it in Init.
type statusHost struct{ obs []features.Observer }

func (h *statusHost) BeforeClaim(features.BeforeClaimHook) {}
func (h *statusHost) AfterClaim(features.AfterClaimHook)   {}
func (h *statusHost) BeforeFirstClaim(features.StartHook)  {}
func (h *statusHost) Observe(o features.Observer)          { h.obs = append(h.obs, o) }
func (h *statusHost) Runs() features.Runs                  { return nil }

// `status` prints a real status endpoint's summary as tables, or its JSON.
func TestStatusCommand(t *testing.T) {
	s, err := status.New(status.Config{
		Listen: "127.0.0.1:0", Version: "9.9.9", WorkerPoolID: "prov/type", WorkerGroup: "g", WorkerID: "w1", Capacity: 2,
		PingQueue:  func(context.Context) error { return nil },
		PingDocker: func(context.Context) error { return errors.New("connection refused") },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h := &statusHost{}
	if err := s.Init(t.Context(), h); err != nil {
		t.Fatal(err)
	}
	h.obs[0].RunEvent(features.Event{Kind: features.Claimed, Run: features.RunRef{TaskID: "TASK1", RunID: 1}, At: time.Now().Add(-time.Minute)})
	h.obs[0].RunEvent(features.Event{Kind: features.PhaseReached, Run: features.RunRef{TaskID: "TASK1", RunID: 1}, At: time.Now(), Phase: "started"})

	code, out, errOut := runCLI(t, "status", "--addr", s.Addr())
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^worker +prov/type g/w1$`),
		regexp.MustCompile(`(?m)^version +9\.9\.9$`),
		regexp.MustCompile(`(?m)^capacity +1 running of 2 \(1 free\)$`),
		regexp.MustCompile(`(?m)^last claimed run +TASK1/1 at `),
		regexp.MustCompile(`(?m)^queue +reachable$`),
		regexp.MustCompile(`(?m)^docker +UNREACHABLE: connection refused$`),
		regexp.MustCompile(`(?m)^TASK +RUN +PHASE +SINCE +IMAGE$`),
		regexp.MustCompile(`(?m)^TASK1 +1 +started +\S+ \(`),
	} {
		if !want.MatchString(out) {
			t.Errorf("output lacks %s:\n%s", want, out)
		}
	}

	code, out, _ = runCLI(t, "status", "--json", "--addr", "http://"+s.Addr())
	var sum status.Summary
	if code != 0 || json.Unmarshal([]byte(out), &sum) != nil || sum.WorkerID != "w1" || len(sum.Running) != 1 {
		t.Errorf("--json: exit %d, %q", code, out)
	}
}

// A worker that does not answer is an error naming the address.
func TestStatusCommandNoWorker(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	code, _, errOut := runCLI(t, "status", "--addr", addr)
	if code != 1 || !strings.Contains(errOut, addr) {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}
