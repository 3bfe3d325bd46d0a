package shutdown

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// records is a JSON log kept for assertions.
type records struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *records) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.Write(p)
}

// msgs are the messages logged so far, with the named attribute when set.
func (r *records) msgs(attr string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(r.buf.String()), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		m := rec["msg"].(string)
		if v, ok := rec[attr]; ok {
			b, _ := json.Marshal(v)
			m += " " + attr + "=" + string(b)
		}
		out = append(out, m)
	}
	return out
}

func TestIdleTimer(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	logs := &records{}
	it := NewIdleTimer(5*time.Second, clock, slog.New(slog.NewJSONHandler(logs, nil)))

	steps := []struct {
		advance time.Duration
		running int
		claim   bool // Working instead of Check
		want    bool
	}{
		// Working at start-up; idle from the first check without a run.
		{running: 0, want: false},
		{advance: 4 * time.Second, running: 0, want: false},
		// A claim cancels the timer, even with the idle time over.
		{advance: 2 * time.Second, claim: true},
		{running: 1, want: false},
		{advance: time.Hour, running: 1, want: false},
		// The task ended: idle again, counted from this check.
		{running: 0, want: false},
		{advance: 4 * time.Second, running: 0, want: false},
		{advance: time.Second, running: 0, want: true},
		{advance: time.Second, running: 0, want: true},
	}
	for i, s := range steps {
		now = now.Add(s.advance)
		if s.claim {
			it.Working()
			continue
		}
		if got := it.Check(s.running); got != s.want {
			t.Errorf("step %d: Check(%d) = %v, want %v", i, s.running, got, s.want)
		}
	}
	want := []string{"worker idle", "worker working", "worker idle"}
	got := logs.msgs("afterIdleSeconds")
	if len(got) != len(want) {
		t.Fatalf("logged %q, want %q", got, want)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("record %d: %q, want %q", i, got[i], want[i])
		}
	}
	if got[0] != `worker idle afterIdleSeconds=5` {
		t.Errorf("got %q, want the idle time in seconds", got[0])
	}
}

func TestIdleTimerWorkingWhenNotIdle(t *testing.T) {
	logs := &records{}
	it := NewIdleTimer(time.Second, nil, slog.New(slog.NewJSONHandler(logs, nil)))
	it.Working()
	if it.Check(2) {
		t.Error("expired while working")
	}
	if got := logs.msgs(""); len(got) != 0 {
		t.Errorf("logged %q for a worker that was never idle", got)
	}
}

func TestCommand(t *testing.T) {
	out := filepath.Join(t.TempDir(), "reason")
	logs := &records{}
	c := Command{Argv: []string{"sh", "-c", `echo "$DOCKER_WORKER_SHUTDOWN_REASON" > "$1"; echo powering off`, "sh", out},
		Logger: slog.New(slog.NewJSONHandler(logs, nil))}
	if err := c.Shutdown(t.Context(), Idle); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil || strings.TrimSpace(string(b)) != "idle" {
		t.Errorf("the command saw reason %q (%v), want idle", b, err)
	}
	if got := logs.msgs("output"); len(got) != 2 || got[1] != `shutdown command output output="powering off"` {
		t.Errorf("logged %q", got)
	}

	err = Command{Argv: []string{"sh", "-c", "exit 3"}}.Shutdown(t.Context(), TerminationNotice)
	var exit *exec.ExitError
	if err == nil || !strings.Contains(err.Error(), `shutdown command "sh -c exit 3"`) || !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Errorf("failing command: %v", err)
	}
	if err := (Command{}).Shutdown(t.Context(), Idle); err == nil {
		t.Error("an empty command ran")
	}
	if err := (Exit{}).Shutdown(t.Context(), Idle); err != nil {
		t.Error(err)
	}
}
