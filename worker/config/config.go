// Package config is the worker's configuration: defaults, one YAML (or JSON)
// file with docker-worker's key names and its !env tags, and the standard
// Taskcluster environment variables. Load reports every problem at once:
// unknown keys, values of the wrong type, unusable !env tags and invalid
// values, each on its own line naming the file, the line and the key.
// Every key of docker-worker's final config.yml is accepted: those this
// worker does not act on are listed by Config.Ignored (see accepted.go).
// A file in docker-worker's profile form (defaults, production, test) is
// read as its defaults overlaid with one profile, and LoadOptions.RunnerKeys
// accepts the key spellings worker-runner's generic-worker launcher writes.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config is everything the worker process is configured with. Keys follow
// docker-worker's names; times are milliseconds as there.
type Config struct {
	RootURL     string      `yaml:"rootUrl"`
	Taskcluster Credentials `yaml:"taskcluster"`

	ProvisionerID string `yaml:"provisionerId"`
	WorkerType    string `yaml:"workerType"`
	WorkerGroup   string `yaml:"workerGroup"`
	WorkerID      string `yaml:"workerId"`

	// Host facts, shown in the task log header and environment.
	WorkerNodeType string `yaml:"workerNodeType"`
	InstanceID     string `yaml:"instanceId"`
	InstanceType   string `yaml:"instanceType"`
	Region         string `yaml:"region"`
	PublicIP       string `yaml:"publicIp"`
	PrivateIP      string `yaml:"privateIp"`
	Host           string `yaml:"host"`
	// WorkerLocation is given to tasks as TASKCLUSTER_WORKER_LOCATION: a
	// JSON string, or a mapping that is encoded as JSON.
	WorkerLocation any `yaml:"workerLocation"`

	Capacity     int                      `yaml:"capacity"`
	Task         TaskConfig               `yaml:"task"`
	TaskQueue    TaskQueueConfig          `yaml:"taskQueue"`
	DockerConfig DockerConfig             `yaml:"dockerConfig"`
	Features     map[string]FeatureConfig `yaml:"features"`

	// Live log, artifacts and chain of trust (see outputs.go).
	Logging   LoggingConfig   `yaml:"logging"`
	SSL       SSLConfig       `yaml:"ssl"`
	Artifacts ArtifactsConfig `yaml:"artifacts"`
	// Ed25519SigningKeyLocation is the chain-of-trust signing key file
	// (base64 of the 64-byte ed25519 private key, as docker-worker).
	Ed25519SigningKeyLocation string `yaml:"ed25519SigningKeyLocation"`

	// Images, caches and disk (see disk.go).
	// Registries are credentials by "<host>[/<user>]"; the longest
	// matching prefix of an image name wins.
	Registries         map[string]RegistryCredentials `yaml:"registries"`
	Cache              CacheConfig                    `yaml:"cache"`
	CapacityManagement CapacityManagementConfig       `yaml:"capacityManagement"`
	// StateDir holds the worker's journal of the runs it holds (claims,
	// temporary credentials, task logs so far) and its scratch files, so
	// that a restarted worker can finish what a killed one left.
	StateDir string `yaml:"stateDir"`
	// DockerVolume is the filesystem whose free space is checked before
	// claiming ("": Docker's data directory).
	DockerVolume      string                  `yaml:"dockerVolume"`
	GarbageCollection GarbageCollectionConfig `yaml:"garbageCollection"`

	// DockerSave and DindImage serve the dockerSave and dind features (see
	// dockersave.go).
	DockerSave DockerSaveConfig `yaml:"dockerSave"`
	DindImage  string           `yaml:"dindImage"`
	// Interactive configures the interactive shell (see interactive.go).
	Interactive InteractiveConfig `yaml:"interactive"`
	// Devices and CPUs (see devices.go).
	DeviceManagement DeviceManagementConfig `yaml:"deviceManagement"`
	// RestrictCPU gives each task one CPU of its own (cpuset); capacity is
	// then at most the number of CPUs.
	RestrictCPU bool `yaml:"restrictCPU"`
	// Pulse is the broker whose task-exception messages cancel runs at
	// once (see pulse.go).
	Pulse PulseConfig `yaml:"pulse"`
	// Shutdown: idle shutdown and spot termination notices (see shutdown.go).
	Shutdown ShutdownConfig `yaml:"shutdown"`
	// Status: the worker's HTTP status endpoint (see status.go).
	Status StatusConfig `yaml:"status"`
	// Influx is where metrics go (see influx.go).
	Influx InfluxConfig `yaml:"influx"`
	// MetricsCollection: how often host points are written (influx.go).
	MetricsCollection MetricsCollectionConfig `yaml:"metricsCollection"`
	// Provider: registration with worker-manager (see provider.go).
	Provider ProviderConfig `yaml:"provider"`

	// knownFeatures are the feature names features.<name> may use (nil:
	// not checked); see Load.
	knownFeatures []string
	// ignored are the keys the file gave that have no effect (see
	// Ignored).
	ignored []string
}

// Credentials are the worker's Taskcluster credentials.
type Credentials struct {
	ClientID    string `yaml:"clientId"`
	AccessToken string `yaml:"accessToken"`
	Certificate string `yaml:"certificate"`
}

// TaskConfig holds per-task settings.
type TaskConfig struct {
	// ReclaimDivisor: the next reclaim happens at (takenUntil-now)/divisor.
	ReclaimDivisor float64 `yaml:"reclaimDivisor"`
	// StatusPollInterval (ms) is how often a running task's status is
	// checked so a cancellation is noticed before the next reclaim; 0 turns
	// the polling off.
	StatusPollInterval int `yaml:"statusPollInterval"`
}

// TaskQueueConfig controls the claim loop.
type TaskQueueConfig struct {
	// PollInterval is the pause (ms) after an empty or failed claimWork.
	PollInterval int `yaml:"pollInterval"`
	// MaxBackoff caps the pause (ms) after repeated claim failures.
	MaxBackoff int `yaml:"maxBackoff"`
}

// DockerConfig controls image pulls and container privileges.
type DockerConfig struct {
	AllowPrivileged bool `yaml:"allowPrivileged"`
	// AllowDisableSeccomp lets tasks run without a seccomp profile
	// (capabilities.disableSeccomp).
	AllowDisableSeccomp bool `yaml:"allowDisableSeccomp"`
	// MaxAttempts is the number of pull attempts.
	MaxAttempts int `yaml:"maxAttempts"`
	// DelayFactor (ms) is the backoff base: 2^(n-1)*delayFactor*(1±randomization).
	DelayFactor         int     `yaml:"delayFactor"`
	RandomizationFactor float64 `yaml:"randomizationFactor"`
	// DefaultRegistry is the registry of image names without a host, for
	// the credentials lookup.
	DefaultRegistry string `yaml:"defaultRegistry"`
	// PullStallTimeout (ms): a pull that makes no progress this long is
	// cancelled and retried.
	PullStallTimeout int `yaml:"pullStallTimeout"`
}

// FeatureConfig switches one payload feature on or off for this worker.
type FeatureConfig struct {
	Enabled *bool `yaml:"enabled"`
}

// Default returns the built-in defaults (docker-worker's where it had one).
func Default() *Config {
	c := &Config{
		WorkerNodeType: "standalone",
		InstanceID:     "standalone",
		Region:         "none",
		Host:           "localhost",
		Capacity:       1,
		Task:           TaskConfig{ReclaimDivisor: 2, StatusPollInterval: 30000},
		TaskQueue:      TaskQueueConfig{PollInterval: 5000, MaxBackoff: 60000},
		DockerConfig: DockerConfig{
			MaxAttempts:         5,
			DelayFactor:         15000,
			RandomizationFactor: 0.25,
		},
		Features: map[string]FeatureConfig{},
	}
	c.defaultOutputs()
	c.defaultDisk()
	c.defaultDockerSave()
	c.defaultInteractive()
	c.defaultDevices()
	c.defaultPulse()
	c.defaultShutdown()
	c.defaultStatus()
	c.defaultInflux()
	return c
}

// FeatureEnabled reports whether the worker allows feature name;
// def is the answer when the config does not say (docker-worker disables
// bulkLog by default and enables the rest).
func (c *Config) FeatureEnabled(name string, def bool) bool {
	if f, ok := c.Features[name]; ok && f.Enabled != nil {
		return *f.Enabled
	}
	return def
}

// StatusPollInterval is Task.StatusPollInterval as a duration.
func (c *Config) StatusPollInterval() time.Duration {
	return time.Duration(c.Task.StatusPollInterval) * time.Millisecond
}

// PollInterval is TaskQueue.PollInterval as a duration.
func (c *Config) PollInterval() time.Duration {
	return time.Duration(c.TaskQueue.PollInterval) * time.Millisecond
}

// WorkerLocationJSON is the value of TASKCLUSTER_WORKER_LOCATION ("" when unset).
func (c *Config) WorkerLocationJSON() (string, error) {
	switch v := c.WorkerLocation.(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	default:
		b, err := json.Marshal(normalize(v))
		if err != nil {
			return "", fmt.Errorf("workerLocation: %w", err)
		}
		return string(b), nil
	}
}

// normalize turns YAML's map[any]any (from nested documents) into JSON-able maps.
func normalize(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			out[k] = normalize(x)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			out[fmt.Sprint(k)] = normalize(x)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = normalize(x)
		}
		return out
	}
	return v
}

// Environment variables read by [Config.ApplyEnv].
const (
	EnvRootURL     = "TASKCLUSTER_ROOT_URL"
	EnvClientID    = "TASKCLUSTER_CLIENT_ID"
	EnvAccessToken = "TASKCLUSTER_ACCESS_TOKEN"
	EnvCertificate = "TASKCLUSTER_CERTIFICATE"
)

// envOverrides are the keys the standard environment variables override.
var envOverrides = []struct {
	env, key string
	field    func(*Config) *string
}{
	{EnvRootURL, "rootUrl", func(c *Config) *string { return &c.RootURL }},
	{EnvClientID, "taskcluster.clientId", func(c *Config) *string { return &c.Taskcluster.ClientID }},
	{EnvAccessToken, "taskcluster.accessToken", func(c *Config) *string { return &c.Taskcluster.AccessToken }},
	{EnvCertificate, "taskcluster.certificate", func(c *Config) *string { return &c.Taskcluster.Certificate }},
}

// ApplyEnv overrides the Taskcluster settings with the standard environment
// variables that are set (non-empty). getenv is os.Getenv in production.
func (c *Config) ApplyEnv(getenv func(string) string) {
	for _, o := range envOverrides {
		if v := getenv(o.env); v != "" {
			*o.field(c) = v
		}
	}
}

var identifier = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,38}$`)

// A Problem is one thing wrong with a configuration. It reads
// "<file>: line N: <key>: <message>", leaving out the parts that are not
// known (a required key that is missing has no line).
type Problem struct {
	File string // the config file, or "config" when there is none
	Line int    // 1-based line in File, 0 when unknown
	Key  string // key path such as "task.reclaimDivisor" or "artifacts.skipCompressionExtensions[0]"
	Msg  string
}

func (p *Problem) Error() string {
	var b strings.Builder
	for _, part := range []string{p.File, lineText(p.Line), p.Key} {
		if part != "" {
			b.WriteString(part)
			b.WriteString(": ")
		}
	}
	b.WriteString(p.Msg)
	return b.String()
}

func lineText(n int) string {
	if n == 0 {
		return ""
	}
	return "line " + strconv.Itoa(n)
}

// joinProblems is nil for no problems, else an error of one line per
// problem; errors.As finds each *Problem through its Unwrap.
func joinProblems(ps []*Problem) error {
	errs := make([]error, len(ps))
	for i, p := range ps {
		errs[i] = p
	}
	return errors.Join(errs...)
}

// Validate reports every problem in c, one per line, each naming its key.
func (c *Config) Validate() error {
	return joinProblems(c.validate())
}

func (c *Config) validate() []*Problem {
	var errs []*Problem
	bad := func(key, format string, args ...any) {
		errs = append(errs, &Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	if c.RootURL == "" {
		bad("rootUrl", "is required (or set %s)", EnvRootURL)
	} else if u, err := url.Parse(c.RootURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("rootUrl", "%q is not an http(s) URL", c.RootURL)
	}
	if c.Taskcluster.ClientID == "" {
		bad("taskcluster.clientId", "is required (or set %s)", EnvClientID)
	}
	if c.Taskcluster.AccessToken == "" {
		bad("taskcluster.accessToken", "is required (or set %s)", EnvAccessToken)
	}
	if c.Taskcluster.Certificate != "" && !json.Valid([]byte(c.Taskcluster.Certificate)) {
		bad("taskcluster.certificate", "is not valid JSON")
	}
	for _, f := range []struct{ key, val string }{
		{"provisionerId", c.ProvisionerID}, {"workerType", c.WorkerType},
		{"workerGroup", c.WorkerGroup}, {"workerId", c.WorkerID},
	} {
		if !identifier.MatchString(f.val) {
			bad(f.key, "%q must be 1-38 characters of a-z, A-Z, 0-9, '-' and '_'", f.val)
		}
	}
	if c.Capacity < 1 {
		bad("capacity", "must be at least 1, got %d", c.Capacity)
	}
	if c.Task.ReclaimDivisor < 1 {
		bad("task.reclaimDivisor", "must be at least 1, got %v", c.Task.ReclaimDivisor)
	}
	if c.Task.StatusPollInterval < 0 {
		bad("task.statusPollInterval", "must not be negative, got %d", c.Task.StatusPollInterval)
	}
	if c.TaskQueue.PollInterval < 0 {
		bad("taskQueue.pollInterval", "must not be negative, got %d", c.TaskQueue.PollInterval)
	}
	if c.TaskQueue.MaxBackoff < c.TaskQueue.PollInterval {
		bad("taskQueue.maxBackoff", "must be at least taskQueue.pollInterval (%d), got %d", c.TaskQueue.PollInterval, c.TaskQueue.MaxBackoff)
	}
	if c.DockerConfig.MaxAttempts < 1 {
		bad("dockerConfig.maxAttempts", "must be at least 1, got %d", c.DockerConfig.MaxAttempts)
	}
	if c.DockerConfig.DelayFactor < 0 {
		bad("dockerConfig.delayFactor", "must not be negative, got %d", c.DockerConfig.DelayFactor)
	}
	if r := c.DockerConfig.RandomizationFactor; r < 0 || r >= 1 {
		bad("dockerConfig.randomizationFactor", "must be in [0, 1), got %v", r)
	}
	if c.knownFeatures != nil {
		for name := range c.Features {
			if !slices.Contains(c.knownFeatures, name) {
				bad("features."+name, "is not a feature (known: %s)", strings.Join(c.knownFeatures, ", "))
			}
		}
	}
	if _, err := c.WorkerLocationJSON(); err != nil {
		bad("workerLocation", "%v", err)
	}
	c.validateOutputs(bad)
	c.validateDisk(bad)
	c.validateDockerSave(bad)
	c.validateInteractive(bad)
	c.validateDevices(bad)
	c.validatePulse(bad)
	c.validateShutdown(bad)
	c.validateStatus(bad)
	c.validateInflux(bad)
	c.validateProvider(bad)
	return errs
}

// ReadFile overlays the file at path onto c without validating the result,
// for callers that fill in the rest themselves (docker-worker dev). Its !env
// tags read the process environment. Every problem is reported.
func ReadFile(path string, c *Config) error {
	d, err := readFile(path, c, LoadOptions{})
	if err != nil {
		return err
	}
	return joinProblems(d.problems)
}

func readFile(path string, c *Config, o LoadOptions) (*decoder, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	d := decode(data, c, o)
	for _, p := range d.problems {
		p.File = path
	}
	c.ignored = append(c.ignored, d.ignored...)
	return d, nil
}

// LoadOptions are the choices of LoadWith.
type LoadOptions struct {
	// Getenv reads the environment: the !env tags and the standard
	// variables (nil: os.Getenv).
	Getenv func(string) string
	// FeatureNames are the payload features the worker has (the wiring
	// lists them); a features.<name> key naming another is a problem.
	// Without them feature keys are not checked.
	FeatureNames []string
	// Profile picks the profile of a file in docker-worker's profile form
	// (top-level defaults, production, test, ...): the file's defaults
	// overlaid with this profile. A file without profiles ignores it.
	Profile string
	// RunnerKeys accepts the keys worker-runner's generic-worker launcher
	// writes: rootURL, clientId, accessToken, certificate, publicIP,
	// privateIP and instanceID stand for their docker-worker keys (and win
	// over them); availabilityZone and workerTypeMetadata are accepted;
	// workerNodeType defaults to instanceType and host to the provider's
	// public-hostname, as worker-runner's docker-worker launcher set them.
	RunnerKeys bool
	// Registered, when set, is laid over the file (see provider.go).
	Registered *Registered
}

func (o LoadOptions) getenv() func(string) string {
	if o.Getenv == nil {
		return os.Getenv
	}
	return o.Getenv
}

// Load is LoadWith with getenv and featureNames.
func Load(path string, getenv func(string) string, featureNames ...string) (*Config, error) {
	return LoadWith(path, LoadOptions{Getenv: getenv, FeatureNames: featureNames})
}

// LoadWith reads defaults, then the file at path (if path is not empty;
// its !env tags read o.Getenv), then the standard environment variables,
// and validates the result. Every problem of the file (unknown keys, wrong
// types, !env tags that cannot be resolved) and every invalid value is
// reported in one error, a line each, ordered by line; a key that is
// wrong in the file is not reported again as invalid. Keys that have no
// effect here are accepted (see Config.Ignored).
func LoadWith(path string, o LoadOptions) (*Config, error) {
	getenv := o.getenv()
	c := Default()
	c.knownFeatures = o.FeatureNames
	lines := map[string]int{}
	var problems []*Problem
	if path != "" {
		d, err := readFile(path, c, o)
		if err != nil {
			return nil, err
		}
		lines, problems = d.lines, d.problems
		if len(problems) == 1 && problems[0].Key == "" {
			return nil, problems[0] // not YAML, or not a mapping: nothing to validate
		}
		if o.RunnerKeys {
			runnerDefaults(c, lines, d.runnerMeta)
		}
	}
	if o.Registered != nil {
		problems = append(problems, c.applyRegistered(o.Registered)...)
	}
	c.ApplyEnv(getenv)
	for _, o := range envOverrides {
		if getenv(o.env) != "" {
			delete(lines, o.key) // the value is not the file's
		}
	}
	failed := map[string]bool{}
	for _, p := range problems {
		failed[p.Key] = true
	}
	where := path
	if where == "" {
		where = "config"
	}
	for _, p := range c.validate() {
		if underFailed(p.Key, failed) {
			continue
		}
		p.File, p.Line = where, lines[p.Key]
		problems = append(problems, p)
	}
	if len(problems) > 0 {
		slices.SortStableFunc(problems, func(a, b *Problem) int {
			switch {
			case a.Line == b.Line:
				return 0
			case a.Line == 0: // no line: after those with one
				return 1
			case b.Line == 0:
				return -1
			}
			return a.Line - b.Line
		})
		return nil, joinProblems(problems)
	}
	return c, nil
}

// runnerDefaults fills workerNodeType and host, when the file did not give
// them, from what worker-runner's generic-worker launcher writes: the
// instance type, and public-hostname in the provider metadata
// (workerTypeMetadata).
func runnerDefaults(c *Config, lines map[string]int, meta map[string]any) {
	if _, ok := lines["workerNodeType"]; !ok && c.InstanceType != "" {
		c.WorkerNodeType = c.InstanceType
	}
	if _, ok := lines["host"]; !ok {
		if m, ok := meta["workerTypeMetadata"].(map[string]any); ok {
			if h, ok := m["public-hostname"].(string); ok && h != "" {
				c.Host = h
			}
		}
	}
}

// underFailed reports whether key, or a key it is part of, had a problem.
func underFailed(key string, failed map[string]bool) bool {
	for {
		if failed[key] {
			return true
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			return false
		}
		key = key[:i]
	}
}
