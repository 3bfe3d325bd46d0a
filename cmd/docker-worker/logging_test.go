package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// Known events carry docker-worker's name as "type"; others have none.
func TestLoggerEventTypes(t *testing.T) {
	var buf bytes.Buffer
	l := newLogger(&buf, "info", "json").With("workerId", "w1")
	l.Info("claimed task", "taskId", "T")
	l.Info("worker-runner sent new credentials")
	l.Info("cache volume hit: reused", "cache", "c")
	l.Info("live log server listening")
	var types []string
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not JSON: %q: %v", line, err)
		}
		if rec["workerId"] != "w1" {
			t.Errorf("lost the logger's attributes: %v", rec)
		}
		typ, _ := rec["type"].(string)
		types = append(types, typ)
	}
	want := []string{"claimed task", "Got new worker credentials", "cache volume hit", ""}
	if strings.Join(types, "|") != strings.Join(want, "|") {
		t.Errorf("types %q, want %q", types, want)
	}
}

// logging.format text writes slog's key=value lines, type included.
func TestLoggerTextFormat(t *testing.T) {
	var buf bytes.Buffer
	newLogger(&buf, "debug", "text").Debug("run task", "taskId", "T")
	got := buf.String()
	for _, want := range []string{"level=DEBUG", `msg="run task"`, "taskId=T", `type="run task"`} {
		if !strings.Contains(got, want) {
			t.Errorf("line %q lacks %q", got, want)
		}
	}
	if strings.HasPrefix(got, "{") {
		t.Errorf("text format wrote JSON: %q", got)
	}
}
