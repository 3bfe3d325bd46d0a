// Package tasklog is the task log: the text a task's user reads, made of the
// worker's own lines and the container's output, fanned out to sinks (the
// backing file, live-log readers, ...).
//
// Lines use docker-worker's formats exactly: `[taskcluster <time>] msg` for
// information and `\n[taskcluster:error] msg` for errors (the leading blank
// line helps log parsers such as Treeherder's).
package tasklog

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Log fans every write out to its sinks, in order. It is safe for concurrent
// use; writes are serialised so lines from different writers never interleave
// within one Write call. A sink that fails is dropped; the others go on.
type Log struct {
	mu     sync.Mutex
	sinks  []io.Writer
	now    func() time.Time
	closed bool
	err    error
}

// New returns an empty log; now stamps the information lines (nil: time.Now).
func New(now func() time.Time) *Log {
	if now == nil {
		now = time.Now
	}
	return &Log{now: now}
}

// AddSink attaches w; it receives everything written from now on.
func (l *Log) AddSink(w io.Writer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sinks = append(l.sinks, w)
}

// Write writes p to every sink. It never fails: a broken sink is dropped and
// its error kept for [Log.Err]. Writes after Close are discarded.
func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return len(p), nil
	}
	kept := l.sinks[:0]
	for _, s := range l.sinks {
		if _, err := s.Write(p); err != nil {
			if l.err == nil {
				l.err = fmt.Errorf("task log sink: %w", err)
			}
			continue
		}
		kept = append(kept, s)
	}
	l.sinks = kept
	return len(p), nil
}

// Timestamp formats t as docker-worker's log prefix does: ISO 8601 in UTC
// with milliseconds and a space instead of the 'T'.
func Timestamp(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04:05.000Z")
}

// InfoLine formats an information line.
func InfoLine(t time.Time, msg string) string {
	return "[taskcluster " + Timestamp(t) + "] " + msg + "\n"
}

// ErrorLine formats an error line.
func ErrorLine(msg string) string {
	return "\n[taskcluster:error] " + msg + "\n"
}

// Infof writes one information line.
func (l *Log) Infof(format string, args ...any) {
	io.WriteString(l, InfoLine(l.now(), fmt.Sprintf(format, args...)))
}

// Errorf writes one error line.
func (l *Log) Errorf(format string, args ...any) {
	io.WriteString(l, ErrorLine(fmt.Sprintf(format, args...)))
}

// Println writes msg and a newline with no prefix.
func (l *Log) Println(msg string) {
	if !strings.HasSuffix(msg, "\n") {
		msg += "\n"
	}
	io.WriteString(l, msg)
}

// Close stops the log: later writes are discarded. Sinks are not closed;
// their owners close them.
func (l *Log) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
}

// Err returns the first sink failure, if any.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}
