package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := mainExit(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestValidateCommand(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yml")
	os.WriteFile(good, []byte("payload:\n  image: busybox\n  command: [\"true\"]\n  maxRunTime: 60\n"), 0o600)
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"image": "busybox", "maxRunTime": "hello", "onExitStatus": {"retry": ["1"]}, "bogus": 1}`), 0o600)

	if code, out, _ := runCLI(t, "validate", good); code != 0 || !strings.Contains(out, "valid") {
		t.Errorf("good: exit %d, %q", code, out)
	}
	code, out, _ := runCLI(t, "validate", bad)
	if code != 1 {
		t.Errorf("bad: exit %d", code)
	}
	for _, want := range []string{"payload.maxRunTime: must be integer", "payload.onExitStatus.retry[0]: must be integer", `"bogus"`} {
		if !strings.Contains(out, want) {
			t.Errorf("bad: output lacks %q:\n%s", want, out)
		}
	}
}

// Help that was asked for goes to stdout; usage errors go to stderr.
func TestHelpAndUnknown(t *testing.T) {
	for _, args := range [][]string{
		{"run", "--help"}, {"queue", "--help"}, {"dev", "-h"}, {"submit", "--help"}, {"validate", "--help"},
		{"task", "status", "--help"}, {"cot", "verify", "--help"}, {"cot", "keygen", "--help"},
	} {
		code, out, errOut := runCLI(t, args...)
		if code != 0 || !strings.HasPrefix(out, "usage: docker-worker "+strings.Join(args[:len(args)-1], " ")) || errOut != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	for _, args := range [][]string{{"--help"}, {"help"}, {"task", "--help"}, {"cot", "--help"}} {
		if code, out, errOut := runCLI(t, args...); code != 0 || !strings.HasPrefix(out, "usage: docker-worker") || errOut != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	for _, args := range [][]string{{}, {"nope"}, {"run", "--bogus"}, {"submit"}, {"task"}, {"cot"}, {"task", "status"}} {
		if code, out, errOut := runCLI(t, args...); code != 2 || out != "" || !strings.Contains(errOut, "usage: docker-worker") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	if code, out, _ := runCLI(t, "version"); code != 0 || !strings.Contains(out, version) {
		t.Errorf("version: %d %q", code, out)
	}
}

// An unknown --log-level is a usage error naming the accepted levels,
// before anything starts.
func TestBadLogLevel(t *testing.T) {
	for _, cmd := range []string{"run", "queue", "dev"} {
		code, out, errOut := runCLI(t, cmd, "--log-level", "loud")
		want := `invalid value "loud" for flag -log-level: must be one of debug, info, warn, error`
		if code != 2 || out != "" || !strings.HasPrefix(errOut, want+"\nusage: docker-worker "+cmd) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", cmd, code, out, errOut)
		}
	}
	for _, tc := range []struct {
		in   string
		want slog.Level
	}{{"debug", slog.LevelDebug}, {"INFO", slog.LevelInfo}, {"Warn", slog.LevelWarn}, {"error", slog.LevelError}} {
		if got, err := parseLevel(tc.in); err != nil || got != tc.want {
			t.Errorf("parseLevel(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "warning", "info+2", "-4"} {
		if _, err := parseLevel(in); err == nil {
			t.Errorf("parseLevel(%q) accepted", in)
		}
	}
}

// The worker log renders durations as Go duration strings.
func TestLoggerDurations(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{5692125677 * time.Nanosecond, "5.692s"},
		{90 * time.Second, "1m30s"},
		{1500 * time.Microsecond, "1.5ms"},
		{1234567 * time.Nanosecond, "1.235ms"},
		{750 * time.Nanosecond, "750ns"},
		{0, "0s"},
		{-2500 * time.Millisecond, "-2.5s"},
	} {
		var buf bytes.Buffer
		newLogger(&buf, "info", "json").Info("claim failed", "retryIn", tc.d, slog.Group("g", "wait", tc.d), "n", 3)
		var got struct {
			RetryIn string
			G       struct{ Wait string }
			N       int
		}
		if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
			t.Fatalf("%s: %v", buf.String(), err)
		}
		if got.RetryIn != tc.want || got.G.Wait != tc.want || got.N != 3 {
			t.Errorf("%d: logged %s, want retryIn and g.wait %q", tc.d, buf.String(), tc.want)
		}
	}
}

// run takes its config file as --config FILE or as its one argument; it
// reports every config problem at once.
func TestRunConfigArgument(t *testing.T) {
	p := filepath.Join(t.TempDir(), "w.yml")
	os.WriteFile(p, []byte("capacity: 0\nbogus: 1\n"), 0o600)
	wantErr := "docker-worker: bad configuration:\n" +
		p + ": line 1: capacity: must be at least 1, got 0\n" +
		p + ": line 2: bogus: unknown key\n"
	for _, args := range [][]string{{"run", "--config", p}, {"run", p}, {"run", "--log-level", "debug", p}} {
		code, _, errOut := runCLI(t, args...)
		if code != 1 || !strings.HasPrefix(errOut, wantErr) {
			t.Errorf("%v: exit %d, stderr:\n%s", args, code, errOut)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", p, "extra"}, "docker-worker run: one config file only, got 2 arguments: " + p + " extra\nusage: docker-worker run"},
		{[]string{"run", "--config", p, p}, "docker-worker run: the config file is given twice (--config " + p + " and " + p + ")\nusage: docker-worker run"},
	} {
		code, out, errOut := runCLI(t, tc.args...)
		if code != 2 || out != "" || !strings.HasPrefix(errOut, tc.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", tc.args, code, out, errOut)
		}
	}
}

func TestCompleteTask(t *testing.T) {
	now := time.Date(2026, 11, 22, 5, 0, 0, 0, time.UTC)
	id, def := completeTask(map[string]any{"image": "busybox", "maxRunTime": 5}, "x.yml", [2]string{"p", "w"}, now)
	if len(id) != 22 || def["provisionerId"] != "p" || def["workerType"] != "w" ||
		def["deadline"] != "2026-11-22T06:00:00.000Z" || def["payload"].(map[string]any)["image"] != "busybox" {
		t.Errorf("completeTask = %s %v", id, def)
	}
	id, def = completeTask(map[string]any{"taskId": "keep", "taskQueueId": "a/b", "payload": map[string]any{}, "deadline": "x"}, "f", [2]string{"p", "w"}, now)
	if id != "keep" || def["provisionerId"] != nil || def["deadline"] != "x" || def["taskId"] != nil {
		t.Errorf("completeTask kept = %s %v", id, def)
	}
}

// validate refuses what the worker refuses: payload sections no enabled
// feature serves, under their own heading, and follows the worker config's
// feature switches.
func TestValidateRunsTheWorkersCheck(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	kvm := write("kvm.yml", "image: busybox\ncommand: [\"true\"]\nmaxRunTime: 60\ncapabilities: {devices: {kvm: true}}\n")
	bulk := write("bulk.yml", "image: busybox\ncommand: [\"true\"]\nmaxRunTime: 60\nfeatures: {bulkLog: true}\n")
	enable := write("worker.yml", "features: {bulkLog: {enabled: true}}\n")
	unknown := write("unknown.yml", "features: {bulkLogs: {enabled: true}}\n")
	noKVM := write("nokvm.yml", "deviceManagement: {kvm: {enabled: false}}\n")

	code, out, _ := runCLI(t, "validate", "--config", noKVM, kvm)
	if code != 1 || !strings.Contains(out, "The payload asks for what this worker does not provide:\n payload.capabilities.devices.kvm: device \"kvm\" is not supported by this worker") {
		t.Errorf("kvm: exit %d\n%s", code, out)
	}
	if strings.Contains(out, "json schema errors") {
		t.Errorf("kvm: a schema-valid payload reported under the schema heading:\n%s", out)
	}
	code, out, _ = runCLI(t, "validate", bulk)
	if code != 1 || !strings.Contains(out, `payload.features.bulkLog: feature "bulkLog" is not enabled on this worker`) {
		t.Errorf("bulkLog with the default config: exit %d\n%s", code, out)
	}
	if code, out, _ = runCLI(t, "validate", "--config", enable, bulk); code != 0 {
		t.Errorf("bulkLog enabled by --config: exit %d\n%s", code, out)
	}
	if code, _, errOut := runCLI(t, "validate", "--config", unknown, bulk); code != 2 || !strings.Contains(errOut, "features.bulkLogs: is not a feature") {
		t.Errorf("unknown feature key: exit %d\n%s", code, errOut)
	}
}
