package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
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

// identity is the smallest valid config but for workerId.
const identity = `rootUrl: http://127.0.0.1:8080
taskcluster: {clientId: w, accessToken: secret}
provisionerId: local
workerType: docker
workerGroup: wg
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

// Unknown keys, wrong types and invalid values are all reported in one
// error, a line each, in file order, each naming the file, the line and the
// key; keys missing from the file come last, without a line.
func TestLoadReportsEveryProblem(t *testing.T) {
	p := write(t, `rootUrl: http://127.0.0.1:8080
taskcluster: {clientId: w, accessToken: secret}
provisionerId: local
workerTyp: docker
capacity: two
task:
  reclaimDivisr: 2
  reclaimDivisor: 0.5
features:
  artifacts: {enable: true}
workerGroup: [wg]
workerId: w1
dockerConfig: {maxAttempts: 0}
`)
	_, err := Load(p, env(nil))
	if err == nil {
		t.Fatal("no error")
	}
	got := strings.Split(err.Error(), "\n")
	want := []string{
		p + `: line 4: workerTyp: unknown key`,
		p + `: line 5: capacity: must be an integer, got "two"`,
		p + `: line 7: task.reclaimDivisr: unknown key`,
		p + `: line 8: task.reclaimDivisor: must be at least 1, got 0.5`,
		p + `: line 10: features.artifacts.enable: unknown key`,
		p + `: line 11: workerGroup: must be a string, got a list`,
		p + `: line 13: dockerConfig.maxAttempts: must be at least 1, got 0`,
		p + `: workerType: "" must be 1-38 characters of a-z, A-Z, 0-9, '-' and '_'`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	var prob *Problem
	if !errors.As(err, &prob) || prob.File != p || prob.Line != 4 || prob.Key != "workerTyp" {
		t.Errorf("errors.As: %+v", prob)
	}
}

// Each wrong type names the key, the type it must have and what it got.
func TestTypeErrors(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"capacity: two", `capacity: must be an integer, got "two"`},
		{"capacity: 1.5", `capacity: must be an integer, got "1.5"`},
		{"capacity: {a: 1}", `capacity: must be an integer, got a mapping`},
		{"task: {reclaimDivisor: x}", `task.reclaimDivisor: must be a number, got "x"`},
		{"task: 5", `task: must be a mapping, got "5"`},
		{"dockerConfig: {allowPrivileged: maybe}", `dockerConfig.allowPrivileged: must be true or false, got "maybe"`},
		{"features: {bulkLog: {enabled: [1]}}", `features.bulkLog.enabled: must be true or false, got a list`},
		{"features: [bulkLog]", `features: must be a mapping, got a list`},
		{"workerId: {a: 1}", `workerId: must be a string, got a mapping`},
		{"artifacts: {skipCompressionExtensions: .zst}", `artifacts.skipCompressionExtensions: must be a list of strings, got ".zst"`},
		{"artifacts: {skipCompressionExtensions: [.zst, [x]]}", `artifacts.skipCompressionExtensions[1]: must be a string, got a list`},
		{"capacity: 1\ncapacity: 2", `capacity: is given twice (first on line 6)`},
	} {
		doc := identity + tc.doc + "\n"
		if !strings.Contains(tc.doc, "workerId") {
			doc += "workerId: w1\n"
		}
		p := write(t, doc)
		_, err := Load(p, env(nil))
		line := strings.Count(identity, "\n") + 1 + strings.Count(tc.doc, "\n")
		want := fmt.Sprintf("%s: line %d: %s", p, line, tc.want)
		if err == nil || err.Error() != want {
			t.Errorf("%q:\n got %v\nwant %s", tc.doc, err, want)
		}
	}
}

func TestValidateReportsEverything(t *testing.T) {
	p := write(t, "capacity: 0\ntask: {reclaimDivisor: 0.5}\nfeatures: {nope: {enabled: true}}\ndockerConfig: {randomizationFactor: 2}\n")
	_, err := Load(p, env(nil), "bulkLog")
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

// docker-worker's !env tags read the environment given to Load; each
// typed variant converts the value.
func TestEnvTags(t *testing.T) {
	vars := map[string]string{
		"ROOT":     "https://tc.example.com",
		"CAP":      "8",
		"DIV":      "2.5",
		"PRIV":     "TRUE",
		"FEATURES": `{"bulkLog": {"enabled": true}, "dind": {"enabled": false}}`,
		"SKIP":     `.zst ".tar gz" '.x y'`,
		"CLOUD":    "aws",
	}
	for _, tc := range []struct {
		name, doc string
		get       func(*Config) any
		want      any
	}{
		{"!env", "instanceType: !env ROOT", func(c *Config) any { return c.InstanceType }, "https://tc.example.com"},
		{"!env:string", "workerNodeType: !env:string CLOUD", func(c *Config) any { return c.WorkerNodeType }, "aws"},
		{"!env:secret", "ssl: {key: !env:secret ROOT}", func(c *Config) any { return c.SSL.Key }, "https://tc.example.com"},
		{"!env:number integer", "capacity: !env:number CAP", func(c *Config) any { return c.Capacity }, 8},
		{"!env:number fraction", "task: {reclaimDivisor: !env:number DIV}", func(c *Config) any { return c.Task.ReclaimDivisor }, 2.5},
		{"!env:bool", "dockerConfig: {allowPrivileged: !env:bool PRIV}", func(c *Config) any { return c.DockerConfig.AllowPrivileged }, true},
		{"!env:flag set", "dockerConfig: {allowPrivileged: !env:flag CLOUD}", func(c *Config) any { return c.DockerConfig.AllowPrivileged }, true},
		{"!env:flag unset", "dockerConfig: {allowPrivileged: !env:flag NOPE}", func(c *Config) any { return c.DockerConfig.AllowPrivileged }, false},
		{"!env:json", "features: !env:json FEATURES", func(c *Config) any {
			return [2]bool{c.FeatureEnabled("bulkLog", false), c.FeatureEnabled("dind", true)}
		}, [2]bool{true, false}},
		{"!env:list", "artifacts: {skipCompressionExtensions: !env:list SKIP}", func(c *Config) any { return c.Artifacts.SkipCompressionExtensions }, []string{".zst", ".tar gz", ".x y"}},
		{"inside workerLocation", "workerLocation: {cloud: !env CLOUD, n: !env:number CAP}", func(c *Config) any { s, _ := c.WorkerLocationJSON(); return s }, `{"cloud":"aws","n":8}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(write(t, identity+"workerId: w1\n"+tc.doc+"\n"), env(vars))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, tc.get(c)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// An !env tag that cannot be resolved is a problem naming the key and the
// variable; an unknown tag is a problem naming the key and the tag.
func TestEnvTagProblems(t *testing.T) {
	vars := map[string]string{"WORD": "lots", "JSON": `{"bulkLog": {"enable": true}}`, "LIST": "a b", "SECRET": "s3cr3t"}
	for _, tc := range []struct{ doc, want string }{
		{"instanceType: !env UNSET", `instanceType: !env UNSET: the environment variable is not set`},
		{"capacity: !env:number UNSET", `capacity: !env:number UNSET: the environment variable is not set`},
		{"capacity: !env:number WORD", `capacity: !env:number WORD: "lots" is not a number`},
		{"capacity: !env WORD", `capacity: must be an integer, got "lots" (from !env WORD)`},
		{"capacity: !env:secret SECRET", `capacity: must be an integer, got the value of !env:secret SECRET`},
		{"dockerConfig: {allowPrivileged: !env:bool WORD}", `dockerConfig.allowPrivileged: !env:bool WORD: "lots" is not true or false`},
		{"features: !env:json WORD", `features: !env:json WORD: not valid JSON: invalid character 'l' looking for beginning of value`},
		{"features: !env:json JSON", `features.bulkLog.enable: unknown key`},
		{"capacity: !env:list LIST", `capacity: must be an integer, got a list (from !env:list LIST)`},
		{"instanceType: !env lowercase", `instanceType: !env must be followed by an environment variable name (A-Z, 0-9, _)`},
		{"instanceType: !env [A]", `instanceType: !env must be followed by an environment variable name (A-Z, 0-9, _)`},
		{"instanceType: !ENV ROOT", `instanceType: unknown tag !ENV (known: !env, !env:string, !env:secret, !env:number, !env:bool, !env:flag, !env:json, !env:list)`},
		{"workerLocation: {cloud: !env UNSET}", `workerLocation.cloud: !env UNSET: the environment variable is not set`},
	} {
		p := write(t, identity+"workerId: w1\n"+tc.doc+"\n")
		_, err := Load(p, env(vars))
		want := fmt.Sprintf("%s: line 7: %s", p, tc.want)
		if err == nil || err.Error() != want {
			t.Errorf("%q:\n got %v\nwant %s", tc.doc, err, want)
		}
	}
}

// A key set by a standard environment variable is not reported at the
// file's line: the value is not the file's.
func TestEnvOverrideProblemHasNoLine(t *testing.T) {
	p := write(t, "rootUrl: https://tc.example.com\n"+strings.TrimPrefix(identity, "rootUrl: http://127.0.0.1:8080\n")+"workerId: w1\n")
	_, err := Load(p, env(map[string]string{EnvRootURL: "ftp://x"}))
	want := p + `: rootUrl: "ftp://x" is not an http(s) URL`
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

// Feature keys are checked against the names the worker has, given by the
// caller, with the file and line of the key.
func TestFeatureKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "worker.yml")
	if err := os.WriteFile(path, []byte("features:\n  bulkLog: {enabled: true}\n  tcProxy: {enabled: false}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path, func(string) string { return "" }, "artifacts", "bulkLog")
	want := path + ": line 3: features.tcProxy: is not a feature (known: artifacts, bulkLog)"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got %v, want %q", err, want)
	}
	if _, err := Load(path, func(string) string { return "" }); err != nil && strings.Contains(err.Error(), "tcProxy") {
		t.Errorf("without feature names the keys are not checked: %v", err)
	}
}

func TestImageCacheDiskKeys(t *testing.T) {
	p := write(t, identity+"workerId: w1\n"+`registries:
  registry.example.com: {username: u, password: p}
  localhost:5000/team: {username: t, password: q}
dockerConfig: {defaultRegistry: reg.example, pullStallTimeout: 60000}
cache: {volumeCachePath: /srv/caches}
capacityManagement: {diskspaceThreshold: 1000000000}
dockerVolume: /var/lib/docker
garbageCollection: {imageExpiration: 1000, containerExpiration: 2000}
`)
	c, err := Load(p, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]RegistryCredentials{"registry.example.com": {"u", "p"}, "localhost:5000/team": {"t", "q"}}
	if diff := cmp.Diff(want, c.Registries); diff != "" {
		t.Errorf("registries (-want +got):\n%s", diff)
	}
	if c.DockerConfig.DefaultRegistry != "reg.example" || c.PullStallTimeoutDuration() != time.Minute ||
		c.Cache.VolumeCachePath != "/srv/caches" || c.CapacityManagement.DiskspaceThreshold != 1e9 ||
		c.DockerVolume != "/var/lib/docker" || c.GarbageCollection != (GarbageCollectionConfig{1000, 2000}) {
		t.Errorf("got %+v %+v %+v %q %+v", c.DockerConfig, c.Cache, c.CapacityManagement, c.DockerVolume, c.GarbageCollection)
	}
	d := Default()
	if d.DockerConfig.DefaultRegistry != "registry.hub.docker.com" || d.Cache.VolumeCachePath != "/var/cache/docker-worker" ||
		d.CapacityManagement.DiskspaceThreshold != 30_000_000_000 || d.DockerVolume != "" {
		t.Errorf("defaults %+v", d)
	}

	bad := write(t, identity+"workerId: w1\n"+`cache: {volumeCachePath: relative}
registries: {"https://x": {password: p}}
`)
	_, err = Load(bad, env(nil))
	for _, w := range []string{"cache.volumeCachePath: must be an absolute path", "must be a registry host", "username: is required"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
}
