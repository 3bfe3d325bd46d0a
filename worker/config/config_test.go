package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "worker.yml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const good = `
rootUrl: http://127.0.0.1:8080
taskcluster: {clientId: w, accessToken: secret}
provisionerId: local
workerType: docker
workerGroup: wg
workerId: w1
capacity: 4
task: {reclaimDivisor: 3}
taskQueue: {pollInterval: 100}
features: {bulkLog: {enabled: true}}
workerLocation: {cloud: local, region: here}
`

func TestLoadGood(t *testing.T) {
	c, err := Load(write(t, good), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Capacity != 4 || c.Task.ReclaimDivisor != 3 || c.PollInterval().Milliseconds() != 100 || c.DockerConfig.MaxAttempts != 5 {
		t.Errorf("loaded %+v", c)
	}
	if !c.FeatureEnabled("bulkLog", false) || !c.FeatureEnabled("artifacts", true) {
		t.Error("feature switches wrong")
	}
	loc, _ := c.WorkerLocationJSON()
	if loc != `{"cloud":"local","region":"here"}` {
		t.Errorf("workerLocation = %s", loc)
	}
}

func TestEnvOverrides(t *testing.T) {
	c, err := Load(write(t, good), env(map[string]string{EnvRootURL: "https://tc.example.com", EnvAccessToken: "other"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.RootURL != "https://tc.example.com" || c.Taskcluster.AccessToken != "other" || c.Taskcluster.ClientID != "w" {
		t.Errorf("got %+v", c.Taskcluster)
	}
}

func TestAllProblemsReportedWithFileAndKey(t *testing.T) {
	p := write(t, "capacity: 2\nworkerTyp: x\ntask:\n  reclaimDivisr: 2\nfeatures:\n  artifacts: {enable: true}\n")
	_, err := Load(p, env(nil))
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{`unknown key "workerTyp"`, `unknown key "task.reclaimDivisr"`, `unknown key "features.artifacts.enable"`, p + ": line 2"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
}

func TestValidateReportsEverything(t *testing.T) {
	p := write(t, "capacity: 0\ntask: {reclaimDivisor: 0.5}\nfeatures: {nope: {enabled: true}}\ndockerConfig: {randomizationFactor: 2}\n")
	_, err := Load(p, env(nil))
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{"rootUrl: is required", "taskcluster.clientId", "taskcluster.accessToken", "provisionerId", "workerType", "workerGroup", "workerId",
		"capacity: must be at least 1", "task.reclaimDivisor", "features.nope", "dockerConfig.randomizationFactor"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q", want)
		}
	}
	for _, line := range strings.Split(msg, "\n") {
		if !strings.HasPrefix(line, p+": ") {
			t.Errorf("line %q does not name the file", line)
		}
	}
}

func TestTypeErrorsAndBadYAML(t *testing.T) {
	if _, err := Load(write(t, "capacity: lots\n"), env(nil)); err == nil || !strings.Contains(err.Error(), "lots") {
		t.Errorf("type error: %v", err)
	}
	if _, err := Load(write(t, "a: [\n"), env(nil)); err == nil || !strings.Contains(err.Error(), "not valid YAML") {
		t.Errorf("bad yaml: %v", err)
	}
	if _, err := Load(write(t, "- 1\n"), env(nil)); err == nil || !strings.Contains(err.Error(), "mapping") {
		t.Errorf("list: %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yml"), env(nil)); err == nil {
		t.Error("missing file accepted")
	}
}
