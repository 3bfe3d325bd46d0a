package main

import (
	"bytes"
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

func TestHelpAndUnknown(t *testing.T) {
	for _, c := range []string{"run", "queue", "dev", "submit", "validate"} {
		if code, _, errOut := runCLI(t, c, "--help"); code != 0 || !strings.Contains(errOut, "usage: docker-worker "+c) {
			t.Errorf("%s --help: exit %d, %q", c, code, errOut)
		}
	}
	if code, _, _ := runCLI(t, "nope"); code != 2 {
		t.Errorf("unknown command exit %d", code)
	}
	if code, out, _ := runCLI(t, "version"); code != 0 || !strings.Contains(out, version) {
		t.Errorf("version: %d %q", code, out)
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	p := filepath.Join(t.TempDir(), "w.yml")
	os.WriteFile(p, []byte("capacity: 0\nbogus: 1\n"), 0o600)
	code, _, errOut := runCLI(t, "run", "--config", p)
	if code != 1 || !strings.Contains(errOut, p+`: line 2: unknown key "bogus"`) {
		t.Errorf("exit %d, %q", code, errOut)
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
