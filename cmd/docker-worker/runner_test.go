package main

import (
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"go.dockerworker.dev/docker-worker/worker"
)

// stops records the stops a stopper asks for.
type stops struct {
	mu    sync.Mutex
	modes []worker.StopMode
}

func (s *stops) Stop(m worker.StopMode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.modes = append(s.modes, m)
}

// Signals and worker-runner's graceful-termination go through the same
// stopper: SIGTERM and finish-tasks false abort running tasks, SIGINT and
// finish-tasks true let them finish, and an interrupt after any graceful
// stop aborts them.
func TestStopper(t *testing.T) {
	g, i := worker.StopGraceful, worker.StopImmediate
	for _, tc := range []struct {
		name  string
		steps []func(*stopper)
		want  []worker.StopMode
	}{
		{"SIGTERM", []func(*stopper){sig(syscall.SIGTERM)}, []worker.StopMode{i}},
		{"SIGINT twice", []func(*stopper){sig(os.Interrupt), sig(os.Interrupt)}, []worker.StopMode{g, i}},
		{"finish-tasks true", []func(*stopper){runner(true)}, []worker.StopMode{g}},
		{"finish-tasks false", []func(*stopper){runner(false)}, []worker.StopMode{i}},
		{"finish-tasks true, then SIGINT", []func(*stopper){runner(true), sig(os.Interrupt)}, []worker.StopMode{g, i}},
		{"SIGINT, then finish-tasks false", []func(*stopper){sig(os.Interrupt), runner(false)}, []worker.StopMode{g, i}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &stops{}
			st := &stopper{w: rec, logger: slog.New(slog.DiscardHandler)}
			for _, step := range tc.steps {
				step(st)
			}
			if !slices.Equal(rec.modes, tc.want) {
				t.Errorf("stops %v, want %v", rec.modes, tc.want)
			}
		})
	}
}

func sig(s os.Signal) func(*stopper) { return func(st *stopper) { st.signal(s) } }

func runner(finish bool) func(*stopper) {
	return func(st *stopper) { st.gracefulTermination(finish) }
}

// worker-runner's docker-worker launcher runs "docker-worker --host
// worker-runner production"; that is run under the runner.
func TestLegacyHostArgs(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		want    []string
		ok      bool
		wantErr string
	}{
		{[]string{"--host", "worker-runner", "production"}, []string{"--with-worker-runner", "--profile", "production"}, true, ""},
		{[]string{"--host=worker-runner"}, []string{"--with-worker-runner"}, true, ""},
		{[]string{"--host", "test", "test"}, nil, true, "only worker-runner is supported"},
		{[]string{"--host"}, nil, true, "needs a value"},
		{[]string{"--host", "worker-runner", "production", "extra"}, nil, true, "one profile name"},
		{[]string{"run", "--host"}, nil, false, ""},
	} {
		got, ok, err := legacyHostArgs(tc.args)
		if ok != tc.ok || !slices.Equal(got, tc.want) || (tc.wantErr == "") != (err == nil) ||
			(err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("legacyHostArgs(%v) = %v, %v, %v; want %v, %v, %q", tc.args, got, ok, err, tc.want, tc.ok, tc.wantErr)
		}
	}
	if code, _, errOut := runCLI(t, "--host", "aws", "production"); code != 2 || !strings.Contains(errOut, "only worker-runner is supported") {
		t.Errorf("--host aws: exit %d, stderr %q", code, errOut)
	}
}
