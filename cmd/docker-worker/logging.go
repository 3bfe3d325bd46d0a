package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"time"

	"go.dockerworker.dev/docker-worker/worker/config"
)

// newLogger is the worker's logger at level, which parse has checked
// (anything else logs at info), in format (config.LogFormatText for slog's
// key=value lines, anything else JSON). Durations are written as Go
// duration strings ("5.692s"), not nanoseconds. Records of the events
// docker-worker logged carry its event name as "type" (see eventType).
func newLogger(w io.Writer, level, format string) *slog.Logger {
	l, err := parseLevel(level)
	if err != nil {
		l = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: l, ReplaceAttr: durationsAsText}
	var h slog.Handler
	if format == config.LogFormatText {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(typedEvents{h})
}

// docker-worker's event names (the "type" of its log lines) that this
// worker logs under the same message.
var dockerWorkerEvents = map[string]bool{
	"start": true, "claimed task": true, "run task": true, "task start": true, "task run": true,
	"task resolved": true, "task aborted": true, "task max runtime timeout": true, "cancel task": true,
	"cancelling task": true, "task error": true, "next claim": true, "reclaiming task": true,
	"reclaimed task": true, "error reclaiming task": true, "ensure image": true,
	"retrying artifact upload": true, "cache volume hit": true, "cache volume miss": true,
	"cache volume release": true, "cache volume purge": true, "cache volume removed": true,
	"cache volume created": true, "container removed": true, "container removal error": true,
	"image removed": true, "garbage collection started": true, "garbage collection finished": true,
	"garbage collection warning": true, "[alert-operator] diskspace threshold reached": true,
	"[alert-operator] stale container": true, "[alert-operator] ssl certificate error": true,
	"[alert-operator] task retrieval error": true, "[alert-operator] error determining device capacity": true,
	"[info] host capacity adjusted": true, "worker idle": true, "worker working": true, "uptime": true,
	"Terminating worker due to SIGTERM": true, "shutdown": true, "exit": true,
	"error killing states": true, "error starting container": true,
}

// renamedEvents maps this worker's messages to the docker-worker event
// they stand for where the wording differs.
var renamedEvents = map[string]string{
	"worker-runner sent new credentials":    "Got new worker credentials",
	"worker-runner asks the worker to stop": "Got graceful-termination request",
	"claim failed":                          "[alert-operator] task retrieval error",
}

// eventType is docker-worker's event name for a record's message ("" when
// it has none). Messages that start with a known event and go on after a
// colon ("cache volume hit: ...") count as that event.
func eventType(msg string) string {
	if dockerWorkerEvents[msg] {
		return msg
	}
	if t, ok := renamedEvents[msg]; ok {
		return t
	}
	if i := strings.IndexByte(msg, ':'); i > 0 && dockerWorkerEvents[msg[:i]] {
		return msg[:i]
	}
	return ""
}

// typedEvents adds a "type" attribute, docker-worker's event name, to
// records whose message has one, so that log searches written for
// docker-worker's lines still find them.
type typedEvents struct{ slog.Handler }

func (h typedEvents) Handle(ctx context.Context, r slog.Record) error {
	if t := eventType(r.Message); t != "" {
		r = r.Clone()
		r.AddAttrs(slog.String("type", t))
	}
	return h.Handler.Handle(ctx, r)
}

func (h typedEvents) WithAttrs(as []slog.Attr) slog.Handler {
	return typedEvents{h.Handler.WithAttrs(as)}
}

func (h typedEvents) WithGroup(name string) slog.Handler {
	return typedEvents{h.Handler.WithGroup(name)}
}

// durationsAsText is a slog ReplaceAttr that renders time.Duration values
// as Go duration strings, rounded to a millisecond from a second up and to
// a microsecond from a millisecond up.
func durationsAsText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() != slog.KindDuration {
		return a
	}
	d := a.Value.Duration()
	switch abs := d.Abs(); {
	case abs >= time.Second:
		d = d.Round(time.Millisecond)
	case abs >= time.Millisecond:
		d = d.Round(time.Microsecond)
	}
	return slog.String(a.Key, d.String())
}
