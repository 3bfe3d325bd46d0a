package config

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// ProviderConfig is the provider section: how a worker that runs alone
// (without worker-runner) gets its identity, credentials and worker pool
// configuration from worker-manager. The key names are those of
// worker-runner's provider section, so that an operator can carry one over.
// Empty ProviderType: no registration (credentials come from the file).
type ProviderConfig struct {
	// ProviderType is "static" (a host known to worker-manager by a
	// static secret) or "aws" (an EC2 instance started by worker-manager,
	// identified by its instance identity document).
	ProviderType string `yaml:"providerType"`
	// RootURL is the deployment's root URL for a static worker (as
	// worker-runner's static provider takes it); empty: rootUrl. The aws
	// provider reads it from the instance's user-data.
	RootURL string `yaml:"rootURL"`
	// ProviderID names the worker-manager provider (static only; for aws
	// the instance's user-data names it). Default "static".
	ProviderID string `yaml:"providerID"`
	// WorkerPoolID, WorkerGroup and WorkerID identify a static worker;
	// WorkerPoolID gives provisionerId/workerType.
	WorkerPoolID string `yaml:"workerPoolID"`
	WorkerGroup  string `yaml:"workerGroup"`
	WorkerID     string `yaml:"workerID"`
	// StaticSecret is the static worker's secret, given to createWorker
	// (44 characters of a-z, A-Z, 0-9, '-' and '_').
	StaticSecret string `yaml:"staticSecret"`
	// MetadataEndpoint is the EC2 instance metadata service's base URL
	// (aws only); empty: shutdown.metadataEndpoint, else
	// $AWS_EC2_METADATA_SERVICE_ENDPOINT, else http://169.254.169.254.
	MetadataEndpoint string `yaml:"metadataEndpoint"`
}

// Provider types.
const (
	ProviderStatic = "static"
	ProviderAWS    = "aws"
)

// DefaultStaticProviderID is provider.providerID's default.
const DefaultStaticProviderID = "static"

var (
	staticSecretPattern = regexp.MustCompile(`^[a-zA-Z0-9_-]{44}$`)
	workerPoolIDPattern = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,38}/[a-z]([-a-z0-9]{0,36}[a-z0-9])?$`)
)

// Registered says what registration with worker-manager gave, for
// LoadOptions.Registered: the worker pool's workerConfig, which is laid
// over the file (as worker-runner lays it over its config file's
// workerConfig), and Apply, which sets what registration decides
// (credentials, worker identity, host facts) over both.
type Registered struct {
	// WorkerConfig is the workerConfig object (JSON); empty: none.
	WorkerConfig []byte
	// From names it in problems, e.g. "workerConfig of pool proj/type".
	From string
	// Apply sets the registration's values.
	Apply func(*Config)
}

// applyRegistered lays r over c and returns the problems of its
// workerConfig.
func (c *Config) applyRegistered(r *Registered) []*Problem {
	var problems []*Problem
	if len(r.WorkerConfig) > 0 {
		d := decode(r.WorkerConfig, c, LoadOptions{})
		for _, p := range d.problems {
			p.File = r.From
		}
		problems = d.problems
		c.ignored = append(c.ignored, d.ignored...)
	}
	if r.Apply != nil {
		r.Apply(c)
	}
	return problems
}

// ReadProvider reads the file at path (and the standard environment
// variables) for its provider section and rootUrl, before registration:
// the rest of the file is decoded but not validated. It reports the
// problems of the provider section only (and a file that is not YAML).
func ReadProvider(path string, o LoadOptions) (*Config, error) {
	c := Default()
	if path != "" {
		d, err := readFile(path, c, o)
		if err != nil {
			return nil, err
		}
		// Only the provider section's problems (and a file that is not
		// YAML) stop here; LoadWith reports the rest, all at once.
		var mine []*Problem
		for _, p := range d.problems {
			if p.Key == "" || p.Key == "provider" || strings.HasPrefix(p.Key, "provider.") {
				mine = append(mine, p)
			}
		}
		if len(mine) > 0 {
			return nil, joinProblems(mine)
		}
	}
	c.ApplyEnv(o.getenv())
	var problems []*Problem
	c.validateProvider(func(key, format string, args ...any) {
		problems = append(problems, &Problem{File: path, Key: key, Msg: fmt.Sprintf(format, args...)})
	})
	if len(problems) > 0 {
		return nil, joinProblems(problems)
	}
	return c, nil
}

// validateProvider checks the provider.* keys.
func (c *Config) validateProvider(bad func(key, format string, args ...any)) {
	p := c.Provider
	switch p.ProviderType {
	case "":
		return
	case ProviderStatic:
		if !workerPoolIDPattern.MatchString(p.WorkerPoolID) {
			bad("provider.workerPoolID", "%q is not a worker pool ID (<provisionerId>/<workerType>)", p.WorkerPoolID)
		}
		if !identifier.MatchString(p.WorkerGroup) {
			bad("provider.workerGroup", "%q must be 1-38 characters of a-z, A-Z, 0-9, '-' and '_'", p.WorkerGroup)
		}
		if !identifier.MatchString(p.WorkerID) {
			bad("provider.workerID", "%q must be 1-38 characters of a-z, A-Z, 0-9, '-' and '_'", p.WorkerID)
		}
		if !staticSecretPattern.MatchString(p.StaticSecret) {
			bad("provider.staticSecret", "must be 44 characters of a-z, A-Z, 0-9, '-' and '_'")
		}
		if p.RootURL != "" {
			if u, err := url.Parse(p.RootURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				bad("provider.rootURL", "%q is not an http(s) URL", p.RootURL)
			}
		} else if c.RootURL == "" {
			bad("rootUrl", "is required with provider.providerType static: set it, provider.rootURL or %s", EnvRootURL)
		}
	case ProviderAWS:
		if p.MetadataEndpoint != "" {
			u, err := url.Parse(p.MetadataEndpoint)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				bad("provider.metadataEndpoint", "%q is not an http(s) URL", p.MetadataEndpoint)
			}
		}
	default:
		bad("provider.providerType", "%q is not a provider type (static, aws)", p.ProviderType)
	}
}

// MetadataURL is the instance metadata endpoint of the aws provider ("":
// the SDK's default).
func (c *Config) MetadataURL() string {
	if c.Provider.MetadataEndpoint != "" {
		return c.Provider.MetadataEndpoint
	}
	return c.Shutdown.MetadataEndpoint
}
