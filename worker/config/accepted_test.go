package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// referenceConfig is docker-worker's final config.yml from the shared
// reference folder beside the checkout (<repo>/../shared/reference).
// Without it the test is skipped, unless CI is set: then it fails.
func referenceConfig(t *testing.T) []byte {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
	b, err := os.ReadFile(filepath.Join(dir, "..", "shared", "reference", "config.final-2026-04.yml"))
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("reference config not available: %v", err)
		}
		t.Fatalf("reference config is required when CI is set: %v", err)
	}
	return b
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// The identity worker-runner (or the operator) adds to docker-worker's
// config.yml, which has none of its own.
const poolIdentity = "  provisionerId: proj\n  workerType: ci\n  workerGroup: us-east-1\n  workerId: i-0123\n"

// docker-worker's final config.yml loads as it is, under each of its
// profiles, every key accepted; the keys that have no effect here are
// listed for the one warning. (influx is tolerated as unknown only until
// the influx key lands.)
func TestReferenceConfigLoads(t *testing.T) {
	ref := string(referenceConfig(t))
	body := strings.Replace(ref, "defaults:\n", "defaults:\n"+poolIdentity, 1)
	path := writeFile(t, "config.yml", body)
	vars := map[string]string{
		"TASKCLUSTER_ROOT_URL": "https://tc.example.com", "TASKCLUSTER_CLIENT_ID": "worker/ci", "TASKCLUSTER_ACCESS_TOKEN": "secret",
		"DOCKER_WORKER_TEST_FEATURES": `{"bulkLog": {"enabled": true}}`,
	}
	wantIgnored := []string{"monitorProject", "statelessHostname", "testMode", "alivenessCheckInterval",
		"garbageCollection.interval", "logging.liveLogChunkInterval", "task.dequeueCount",
		"createQueue", "pulse.username", "pulse.password", "schema",
		"influx.connectionString", "influx.maxDelay", "influx.maxPendingPoints"}
	for _, profile := range []string{"", "production", "test"} {
		t.Run("profile "+profile, func(t *testing.T) {
			opts := LoadOptions{Getenv: env(vars), Profile: profile,
				FeatureNames: []string{"localLiveLog", "artifacts", "chainOfTrust", "bulkLog", "taskclusterProxy", "dind", "dockerSave", "interactive", "allowPtrace"}}
			c, err := LoadWith(path, opts)
			if err != nil {
				t.Fatalf("the reference config does not load:\n%v", err)
			}
			ignored := c.Ignored()
			if len(slices.Compact(slices.Sorted(slices.Values(ignored)))) != len(ignored) {
				t.Errorf("a key is listed twice: %v", ignored)
			}
			for _, k := range wantIgnored {
				if !slices.Contains(ignored, k) {
					t.Errorf("%s is not in the warning list %v", k, ignored)
				}
				if NoEffectReason(k) == "" {
					t.Errorf("%s has no reason", k)
				}
			}
			if c.ProvisionerID != "proj" || c.RootURL != "https://tc.example.com" || c.DockerConfig.DelayFactor == 0 {
				t.Errorf("values not read: %+v", c)
			}
			switch profile {
			case "production":
				if !c.Logging.SecureLiveLogging {
					t.Error("production profile: secureLiveLogging not set")
				}
			case "test":
				if c.DockerConfig.DelayFactor != 100 || c.TaskQueue.PollInterval != 1000 || !c.FeatureEnabled("bulkLog", false) {
					t.Errorf("test profile not applied: delayFactor %d, pollInterval %d, bulkLog %v",
						c.DockerConfig.DelayFactor, c.TaskQueue.PollInterval, c.FeatureEnabled("bulkLog", false))
				}
			default:
				if c.Logging.SecureLiveLogging || c.DockerConfig.DelayFactor != 15000 {
					t.Error("defaults only: a profile was applied")
				}
			}
		})
	}
}

// Keys that have no effect are accepted whatever their value (their !env
// tags are not read), and reported; keys that are neither known nor
// listed are still refused.
func TestNoEffectKeys(t *testing.T) {
	path := writeFile(t, "c.yml", `rootUrl: https://tc.example.com
taskcluster: {clientId: c, accessToken: t}
provisionerId: p
workerType: t
workerGroup: g
workerId: w
createQueue: true
task: {dequeueCount: [1, 2], reclaimDivisor: 3}
pulse: {username: !env:secret UNSET_VARIABLE, password: x}
shutdown: {enabled: true, afterIdleSeconds: 60}
`)
	c, err := Load(path, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"createQueue", "task.dequeueCount", "pulse.username", "pulse.password"}
	if got := c.Ignored(); !slices.Equal(got, want) {
		t.Errorf("ignored %v, want %v", got, want)
	}
	if !c.Shutdown.Enabled || c.Shutdown.AfterIdleSeconds != 60 {
		t.Errorf("shutdown keys not read: %+v", c.Shutdown)
	}
	if c.Task.ReclaimDivisor != 3 {
		t.Errorf("reclaimDivisor %v beside an ignored key", c.Task.ReclaimDivisor)
	}
	bad := writeFile(t, "bad.yml", "createQueue: true\ncreateQueues: true\ntask: {dequeueCounts: 1}\n")
	_, err = Load(bad, env(nil))
	for _, want := range []string{"line 2: createQueues: unknown key", "line 3: task.dequeueCounts: unknown key"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if err != nil && strings.Contains(err.Error(), "createQueue:") {
		t.Errorf("createQueue refused: %v", err)
	}
}

// A worker pool's config as worker-runner's generic-worker launcher
// writes it (JSON, generic-worker spellings for the runner's own keys,
// the pool's workerConfig merged in) loads with RunnerKeys, the runner's
// values winning over the pool's; without RunnerKeys those spellings are
// unknown keys.
func TestRunnerKeys(t *testing.T) {
	body := `{
  "accessToken": "runner-token",
  "availabilityZone": "us-east-1a",
  "capacity": 2,
  "certificate": "{\"version\":1}",
  "clientId": "worker/runner",
  "createQueue": true,
  "instanceID": "i-0abc",
  "instanceType": "m5.large",
  "privateIP": "10.0.0.5",
  "provisionerId": "proj",
  "publicIP": "192.0.2.7",
  "region": "us-east-1",
  "rootURL": "https://tc.example.com",
  "rootUrl": "https://stale.example.com",
  "workerGroup": "us-east-1",
  "workerId": "i-0abc",
  "workerLocation": "{\"cloud\":\"aws\",\"region\":\"us-east-1\"}",
  "workerType": "ci",
  "workerTypeMetadata": {"public-hostname": "ec2-192-0-2-7.compute.example.com", "instance-type": "m5.large"}
}`
	path := writeFile(t, "worker-config.json", body)
	c, err := LoadWith(path, LoadOptions{Getenv: env(nil), RunnerKeys: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct{ key, got, want string }{
		{"rootUrl", c.RootURL, "https://tc.example.com"},
		{"clientId", c.Taskcluster.ClientID, "worker/runner"},
		{"accessToken", c.Taskcluster.AccessToken, "runner-token"},
		{"certificate", c.Taskcluster.Certificate, `{"version":1}`},
		{"publicIp", c.PublicIP, "192.0.2.7"},
		{"privateIp", c.PrivateIP, "10.0.0.5"},
		{"instanceId", c.InstanceID, "i-0abc"},
		{"workerNodeType", c.WorkerNodeType, "m5.large"},
		{"host", c.Host, "ec2-192-0-2-7.compute.example.com"},
	} {
		if f.got != f.want {
			t.Errorf("%s = %q, want %q", f.key, f.got, f.want)
		}
	}
	if c.Capacity != 2 || !slices.Equal(c.Ignored(), []string{"createQueue"}) {
		t.Errorf("capacity %d, ignored %v", c.Capacity, c.Ignored())
	}
	_, err = LoadWith(path, LoadOptions{Getenv: env(nil)})
	if err == nil || !strings.Contains(err.Error(), "rootURL: unknown key") {
		t.Errorf("without RunnerKeys: %v", err)
	}
}
