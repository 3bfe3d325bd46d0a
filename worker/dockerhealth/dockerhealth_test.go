package dockerhealth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// daemon is a Pinger whose answer the test sets.
type daemon struct {
	mu    sync.Mutex
	err   error
	pings int
}

func (d *daemon) Ping(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pings++
	return d.err
}

func (d *daemon) set(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.err = err
}

// records are the messages of the JSON log in buf.
func records(t *testing.T, buf *bytes.Buffer) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var rec struct{ Msg string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		out = append(out, rec.Msg)
	}
	return out
}

func TestAllowFollowsTheDaemon(t *testing.T) {
	const alert, back = "[alert-operator] docker daemon unreachable", "docker daemon answers again; claiming resumes"
	var buf bytes.Buffer
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d := &daemon{}
	recovered := 0
	c := New(Config{
		AlertInterval: time.Minute,
		Logger:        slog.New(slog.NewJSONHandler(&buf, nil)),
		Now:           func() time.Time { return now },
		Recovered:     func(context.Context) { recovered++ },
	}, d)
	ctx := t.Context()
	count := func(msg string) int {
		n := 0
		for _, m := range records(t, &buf) {
			if m == msg {
				n++
			}
		}
		return n
	}
	step := func(want, wantAllow int, wantReason string, alerts, backs int) {
		t.Helper()
		allow, reason := c.Allow(ctx, want)
		if allow != wantAllow || reason != wantReason {
			t.Errorf("Allow(%d) = %d, %q; want %d, %q", want, allow, reason, wantAllow, wantReason)
		}
		if got := count(alert); got != alerts {
			t.Errorf("%d alerts, want %d", got, alerts)
		}
		if got := count(back); got != backs {
			t.Errorf("%d resumption records, want %d", got, backs)
		}
	}

	step(2, 2, "", 0, 0)
	d.set(errors.New("dial unix docker.sock: connect: no such file or directory"))
	step(2, 0, Reason, 1, 0) // the first failure alerts at once
	now = now.Add(30 * time.Second)
	step(2, 0, Reason, 1, 0) // not again within the interval
	now = now.Add(30 * time.Second)
	step(1, 0, Reason, 2, 0) // again once the interval has passed
	now = now.Add(10 * time.Second)
	step(1, 0, Reason, 2, 0)
	d.set(nil)
	step(3, 3, "", 2, 1)
	if recovered != 1 {
		t.Errorf("Recovered called %d times, want 1", recovered)
	}
	step(3, 3, "", 2, 1)
	if recovered != 1 {
		t.Errorf("Recovered called %d times while the daemon stayed up, want 1", recovered)
	}
	// A new outage alerts at once, whatever the time since the last alert.
	now = now.Add(time.Second)
	d.set(errors.New("connection refused"))
	step(1, 0, Reason, 3, 1)
	d.set(nil)
	step(1, 1, "", 3, 2)
	if recovered != 2 {
		t.Errorf("Recovered called %d times after two outages, want 2", recovered)
	}
}

// hung is a daemon that never answers: the ping times out.
type hung struct{}

func (hung) Ping(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

func TestAHungDaemonIsUnreachable(t *testing.T) {
	var buf bytes.Buffer
	c := New(Config{PingTimeout: 10 * time.Millisecond, Logger: slog.New(slog.NewJSONHandler(&buf, nil))}, hung{})
	if allow, reason := c.Allow(t.Context(), 1); allow != 0 || reason != Reason {
		t.Errorf("Allow = %d, %q; want 0, %q", allow, reason, Reason)
	}
	if !strings.Contains(buf.String(), "[alert-operator] docker daemon unreachable") {
		t.Errorf("no alert logged:\n%s", buf.String())
	}
}

func TestAStoppingWorkerRaisesNoAlert(t *testing.T) {
	var buf bytes.Buffer
	c := New(Config{Logger: slog.New(slog.NewJSONHandler(&buf, nil))}, hung{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if allow, _ := c.Allow(ctx, 1); allow != 0 {
		t.Errorf("Allow = %d, want 0", allow)
	}
	if buf.Len() != 0 {
		t.Errorf("logged while stopping:\n%s", buf.String())
	}
}
