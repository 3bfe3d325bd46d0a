package spot_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/spot"
	"go.dockerworker.dev/docker-worker/worker/spot/spottest"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name       string
		set        map[string]string
		wantAction string
		wantTime   time.Time
		wantPath   string
	}{
		{name: "no notice"},
		{name: "instance-action terminate",
			set:        map[string]string{spot.InstanceActionPath: `{"action": "terminate", "time": "2026-12-01T08:22:00Z"}`},
			wantAction: "terminate", wantTime: time.Date(2026, 12, 1, 8, 22, 0, 0, time.UTC), wantPath: spot.InstanceActionPath},
		{name: "instance-action stop",
			set:        map[string]string{spot.InstanceActionPath: `{"action": "stop", "time": "2026-12-01T08:22:00Z"}`},
			wantAction: "stop", wantTime: time.Date(2026, 12, 1, 8, 22, 0, 0, time.UTC), wantPath: spot.InstanceActionPath},
		{name: "termination-time only",
			set:        map[string]string{spot.TerminationTimePath: "2026-12-01T08:22:00Z\n"},
			wantAction: "terminate", wantTime: time.Date(2026, 12, 1, 8, 22, 0, 0, time.UTC), wantPath: spot.TerminationTimePath},
		{name: "an answer that does not parse is a notice",
			set:        map[string]string{spot.InstanceActionPath: "soon"},
			wantAction: "terminate", wantPath: spot.InstanceActionPath},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := spottest.Start(t)
			for p, b := range tc.set {
				srv.Set(p, b)
			}
			w := spot.New(spot.Config{Endpoint: srv.URL})
			if answered, n := w.State(); answered || n != nil {
				t.Fatalf("state before any check: %v %v", answered, n)
			}
			n, err := w.Check(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if answered, _ := w.State(); !answered {
				t.Error("not answered after a check")
			}
			if srv.Refused() != 0 {
				t.Errorf("%d reads without a token", srv.Refused())
			}
			if tc.wantPath == "" {
				if n != nil {
					t.Fatalf("got notice %+v", n)
				}
				if srv.Reads(spot.InstanceActionPath) != 1 || srv.Reads(spot.TerminationTimePath) != 1 {
					t.Errorf("reads: %d %d, want both paths once", srv.Reads(spot.InstanceActionPath), srv.Reads(spot.TerminationTimePath))
				}
				return
			}
			if n == nil {
				t.Fatal("no notice")
			}
			if n.Path != tc.wantPath || n.Action != tc.wantAction || !n.Time.Equal(tc.wantTime) {
				t.Errorf("got %+v, want path %s action %s time %v", n, tc.wantPath, tc.wantAction, tc.wantTime)
			}
			// A notice is final: it is not read again, and it stays even if
			// the service stops showing it.
			reads := srv.Reads(tc.wantPath)
			srv.Set(tc.wantPath, "")
			srv.SetFailing(true)
			again, err := w.Check(t.Context())
			if err != nil || again == nil || again.Path != n.Path {
				t.Errorf("second check: %+v, %v", again, err)
			}
			if srv.Reads(tc.wantPath) != reads {
				t.Error("the service was read again after the notice")
			}
		})
	}
}

func TestServerRequiresToken(t *testing.T) {
	srv := spottest.Start(t)
	srv.Set(spot.InstanceActionPath, `{"action":"terminate"}`)
	resp, err := http.Get(srv.URL + "/latest/meta-data/" + spot.InstanceActionPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || srv.Refused() != 1 {
		t.Fatalf("a read without a token got %d (refused %d), want 401", resp.StatusCode, srv.Refused())
	}
}

func TestCheckFailing(t *testing.T) {
	srv := spottest.Start(t)
	srv.SetFailing(true)
	w := spot.New(spot.Config{Endpoint: srv.URL})
	if n, err := w.Check(t.Context()); err == nil || n != nil {
		t.Fatalf("got %v, %v; want an error", n, err)
	}
	if answered, _ := w.State(); answered {
		t.Error("answered after a failed check")
	}
	srv.SetFailing(false)
	if n, err := w.Check(t.Context()); err != nil || n != nil {
		t.Fatalf("got %v, %v after the service recovered", n, err)
	}
	if answered, _ := w.State(); !answered {
		t.Error("not answered after a good check")
	}
}

func TestRun(t *testing.T) {
	srv := spottest.Start(t)
	w := spot.New(spot.Config{Endpoint: srv.URL, Interval: 20 * time.Millisecond})
	got := make(chan spot.Notice, 2)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(t.Context(), func(n spot.Notice) { got <- n })
	}()
	// Polling goes on without a notice, then through a failure.
	for srv.Reads(spot.TerminationTimePath) < 3 {
		time.Sleep(10 * time.Millisecond)
	}
	srv.SetFailing(true)
	for srv.Reads(spot.InstanceActionPath) < srv.Reads(spot.TerminationTimePath)+3 {
		time.Sleep(10 * time.Millisecond)
	}
	srv.SetFailing(false)
	srv.Set(spot.InstanceActionPath, `{"action":"hibernate","time":"2026-12-01T08:22:00Z"}`)
	select {
	case n := <-got:
		if n.Action != "hibernate" {
			t.Errorf("got %+v", n)
		}
	case <-time.After(time.Minute):
		t.Fatal("no notice")
	}
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("Run goes on after the notice")
	}
	if len(got) != 0 {
		t.Error("onNotice called more than once")
	}
}

func TestRunStopsWithContext(t *testing.T) {
	srv := spottest.Start(t)
	w := spot.New(spot.Config{Endpoint: srv.URL, Interval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx, func(spot.Notice) { t.Error("notice without one") })
	}()
	<-srv.FirstRead()
	cancel()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("Run goes on after its context ended")
	}
}
