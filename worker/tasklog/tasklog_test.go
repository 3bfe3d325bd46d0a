package tasklog

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"
)

type failing struct{}

func (failing) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestFormats(t *testing.T) {
	at := time.Date(2026, 11, 22, 5, 6, 7, 89e6, time.FixedZone("x", 3600))
	if got, want := InfoLine(at, "Task ID: abc"), "[taskcluster 2026-11-22 04:06:07.089Z] Task ID: abc\n"; got != want {
		t.Errorf("InfoLine = %q, want %q", got, want)
	}
	if got, want := ErrorLine("boom"), "\n[taskcluster:error] boom\n"; got != want {
		t.Errorf("ErrorLine = %q, want %q", got, want)
	}
}

func TestFanOutDropsBrokenSink(t *testing.T) {
	l := New(func() time.Time { return time.Unix(0, 0) })
	var a, b bytes.Buffer
	l.AddSink(&a)
	l.AddSink(failing{})
	l.AddSink(&b)
	l.Infof("hello %d", 1)
	l.Errorf("bad")
	l.Close()
	l.Println("after close")
	want := "[taskcluster 1970-01-01 00:00:00.000Z] hello 1\n\n[taskcluster:error] bad\n"
	if a.String() != want || b.String() != want {
		t.Errorf("sinks got %q and %q, want %q", a.String(), b.String(), want)
	}
	if l.Err() == nil {
		t.Error("Err() = nil after a sink failed")
	}
}

func TestConcurrentWritesKeepWholeLines(t *testing.T) {
	l := New(nil)
	var buf bytes.Buffer
	l.AddSink(&buf)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				l.Println("0123456789")
			}
		})
	}
	wg.Wait()
	for _, line := range bytes.Split(bytes.TrimSuffix(buf.Bytes(), []byte("\n")), []byte("\n")) {
		if string(line) != "0123456789" {
			t.Fatalf("torn line %q", line)
		}
	}
}
