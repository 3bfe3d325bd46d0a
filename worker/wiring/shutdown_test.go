package wiring

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/worker"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/shutdown"
	"go.dockerworker.dev/docker-worker/worker/spot"
	"go.dockerworker.dev/docker-worker/worker/spot/spottest"
)

// hostStub records the hooks an extension registers.
type hostStub struct {
	before []features.BeforeClaimHook
	after  []features.AfterClaimHook
	start  []features.StartHook
	runs   runsStub
}

func (h *hostStub) BeforeClaim(f features.BeforeClaimHook) { h.before = append(h.before, f) }
func (h *hostStub) AfterClaim(f features.AfterClaimHook)   { h.after = append(h.after, f) }
func (h *hostStub) BeforeFirstClaim(f features.StartHook)  { h.start = append(h.start, f) }
func (h *hostStub) Observe(features.Observer)              {}
func (h *hostStub) Runs() features.Runs                    { return &h.runs }

type runsStub struct{ list []features.RunRef }

func (r *runsStub) Cancel(string, int, error) bool { return false }
func (r *runsStub) List() []features.RunRef        { return r.list }

// stops records the stops asked of the worker.
type stops struct {
	mu    sync.Mutex
	modes []worker.StopMode
}

func (s *stops) stop(m worker.StopMode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.modes = append(s.modes, m)
}

func (s *stops) got() []worker.StopMode {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]worker.StopMode(nil), s.modes...)
}

type actionStub struct{}

func (actionStub) Shutdown(context.Context, shutdown.Reason) error { return nil }

func TestSelfStopSelection(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		name       string
		mutate     func(*config.Config)
		opts       Options
		wantExts   []string
		wantAction string
	}{
		{name: "defaults: nothing", mutate: func(*config.Config) {}, wantAction: "shutdown.Exit"},
		{name: "idle", mutate: func(c *config.Config) { c.Shutdown.Enabled = true },
			wantExts: []string{"*wiring.idleExtension"}, wantAction: "shutdown.Exit"},
		{name: "spot with a command", mutate: func(c *config.Config) {
			c.Shutdown.SpotTermination = true
			c.Shutdown.Command = []string{"shutdown", "-h", "now"}
		}, wantExts: []string{"*wiring.spotExtension"}, wantAction: "shutdown.Command"},
		{name: "both, the caller's action", mutate: func(c *config.Config) {
			c.Shutdown.Enabled, c.Shutdown.SpotTermination = true, true
			c.Shutdown.Command = []string{"shutdown", "-h", "now"}
		}, opts: Options{ShutdownAction: actionStub{}},
			wantExts: []string{"*wiring.idleExtension", "*wiring.spotExtension"}, wantAction: "wiring.actionStub"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			tc.mutate(cfg)
			tc.opts.Logger = logger
			w := &Worker{}
			exts := w.selfStopExtensions(cfg, tc.opts)
			defer w.Close()
			var got []string
			for _, e := range exts {
				got = append(got, typeName(e))
			}
			if !slices.Equal(got, tc.wantExts) {
				t.Errorf("extensions %v, want %v", got, tc.wantExts)
			}
			if a := typeName(w.self.action); a != tc.wantAction {
				t.Errorf("action %s, want %s", a, tc.wantAction)
			}
		})
	}
}

func typeName(v any) string { return fmt.Sprintf("%T", v) }

// The idle extension looks between claims: idle with no run, working
// again on a claim, and a graceful stop once idle long enough, claiming
// nothing from then on.
func TestIdleExtension(t *testing.T) {
	st := &stops{}
	s := &selfStop{logger: slog.New(slog.DiscardHandler), stop: st.stop}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	e := &idleExtension{self: s, after: 5, timer: shutdown.NewIdleTimer(5*time.Second, func() time.Time { return now }, nil)}
	h := &hostStub{}
	if err := e.Init(t.Context(), h); err != nil {
		t.Fatal(err)
	}
	if len(h.before) != 1 || len(h.after) != 1 {
		t.Fatalf("hooks: %d before, %d after", len(h.before), len(h.after))
	}
	allow := func() int { n, _ := h.before[0](t.Context(), 2); return n }
	if allow() != 2 {
		t.Error("held claims when idle began")
	}
	now = now.Add(4 * time.Second)
	h.after[0](t.Context(), features.RunRef{TaskID: "t", RunID: 0})
	h.runs.list = []features.RunRef{{TaskID: "t"}}
	now = now.Add(time.Hour)
	if allow() != 2 || len(st.got()) != 0 {
		t.Fatal("stopped while a run was in progress")
	}
	h.runs.list = nil
	if allow() != 2 {
		t.Error("held claims when idle began again")
	}
	now = now.Add(5 * time.Second)
	n, reason := h.before[0](t.Context(), 2)
	if n != 0 || reason == "" {
		t.Errorf("allowed %d (%q) after the idle time", n, reason)
	}
	if got := st.got(); len(got) != 1 || got[0] != worker.StopGraceful || s.reason() != shutdown.Idle {
		t.Errorf("stops %v, reason %q; want one graceful stop for idle", got, s.reason())
	}
}

// A notice present before the first claim stops the worker at once; the
// claims are held until the metadata service answers and from the notice on.
func TestSpotExtension(t *testing.T) {
	for _, tc := range []struct {
		name       string
		noticeAt   string // "start", "later" or ""
		wantStops  []worker.StopMode
		wantReason shutdown.Reason
	}{
		{name: "notice at start", noticeAt: "start", wantStops: []worker.StopMode{worker.StopImmediate}, wantReason: shutdown.TerminationNotice},
		{name: "notice later", noticeAt: "later", wantStops: []worker.StopMode{worker.StopImmediate}, wantReason: shutdown.TerminationNotice},
		{name: "no notice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := spottest.Start(t)
			if tc.noticeAt == "start" {
				srv.Set(spot.InstanceActionPath, `{"action":"terminate"}`)
			}
			st := &stops{}
			ctx, cancel := context.WithCancel(context.Background())
			s := &selfStop{logger: slog.New(slog.DiscardHandler), stop: st.stop, ctx: ctx, cancel: cancel}
			defer s.end()
			e := &spotExtension{self: s, watcher: spot.New(spot.Config{Endpoint: srv.URL, Interval: 10 * time.Millisecond})}
			h := &hostStub{}
			if err := e.Init(t.Context(), h); err != nil {
				t.Fatal(err)
			}
			if n, reason := h.before[0](t.Context(), 1); n != 0 || reason == "" {
				t.Errorf("allowed %d (%q) before the metadata service answered", n, reason)
			}
			if err := h.start[0](t.Context()); err != nil {
				t.Fatal(err)
			}
			if tc.noticeAt == "later" {
				if n, _ := h.before[0](t.Context(), 1); n != 1 {
					t.Errorf("allowed %d without a notice", n)
				}
				srv.Set(spot.TerminationTimePath, "2026-12-01T08:22:00Z")
				for deadline := time.Now().Add(time.Minute); len(st.got()) == 0; time.Sleep(10 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatal("no stop after the notice")
					}
				}
			}
			s.end()
			if got := st.got(); !slices.Equal(got, tc.wantStops) || s.reason() != tc.wantReason {
				t.Errorf("stops %v reason %q, want %v %q", got, s.reason(), tc.wantStops, tc.wantReason)
			}
			want := 1
			if tc.wantReason != "" {
				want = 0
			}
			if n, _ := h.before[0](t.Context(), 1); n != want {
				t.Errorf("allowed %d after the checks, want %d", n, want)
			}
		})
	}
}
