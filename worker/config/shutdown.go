package config

import (
	"net/url"
	"time"
)

// ShutdownConfig says when the worker stops on its own and what stopping
// means then. The first three keys are docker-worker's: shutdown.enabled
// and shutdown.afterIdleSeconds for idle shutdown, shutdown.nodeTerminationPoll
// for the period of the spot termination check.
type ShutdownConfig struct {
	// Enabled turns idle shutdown on: the worker stops once it has held no
	// run for AfterIdleSeconds, checked between claimWork calls only.
	Enabled bool `yaml:"enabled"`
	// AfterIdleSeconds is how long the worker may be idle before it stops.
	AfterIdleSeconds int `yaml:"afterIdleSeconds"`
	// Command is run (argv, no shell) once the worker stopped on its own
	// and its tasks are resolved, e.g. [shutdown, -h, now]; empty: the
	// process just exits (run's exit code 4).
	Command []string `yaml:"command"`
	// SpotTermination turns on the EC2 instance metadata check for spot
	// interruption notices (spot/instance-action, spot/termination-time).
	SpotTermination bool `yaml:"spotTermination"`
	// NodeTerminationPoll (ms) is the period of that check.
	NodeTerminationPoll int `yaml:"nodeTerminationPoll"`
	// MetadataEndpoint is the instance metadata service's base URL; empty:
	// $AWS_EC2_METADATA_SERVICE_ENDPOINT, else http://169.254.169.254.
	MetadataEndpoint string `yaml:"metadataEndpoint"`
}

// Defaults of the shutdown keys. docker-worker's own default for
// shutdown.enabled was true (its hosts were cloud instances started for
// it); this worker is also run by hand and under supervisors, where
// exiting when idle would surprise, so idle shutdown is opt-in.
const (
	DefaultAfterIdleSeconds    = 300
	DefaultNodeTerminationPoll = 5000
)

func (c *Config) defaultShutdown() {
	c.Shutdown = ShutdownConfig{
		AfterIdleSeconds:    DefaultAfterIdleSeconds,
		NodeTerminationPoll: DefaultNodeTerminationPoll,
	}
}

// validateShutdown checks the shutdown.* keys.
func (c *Config) validateShutdown(bad func(key, format string, args ...any)) {
	s := c.Shutdown
	if s.AfterIdleSeconds < 1 {
		bad("shutdown.afterIdleSeconds", "must be at least 1, got %d", s.AfterIdleSeconds)
	}
	if s.NodeTerminationPoll < 100 {
		bad("shutdown.nodeTerminationPoll", "must be at least 100 (ms), got %d", s.NodeTerminationPoll)
	}
	if len(s.Command) > 0 && s.Command[0] == "" {
		bad("shutdown.command[0]", "must name the program to run")
	}
	if s.MetadataEndpoint != "" {
		u, err := url.Parse(s.MetadataEndpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("shutdown.metadataEndpoint", "%q is not an http(s) URL", s.MetadataEndpoint)
		}
	}
}

// AfterIdle is Shutdown.AfterIdleSeconds as a duration.
func (c *Config) AfterIdle() time.Duration {
	return time.Duration(c.Shutdown.AfterIdleSeconds) * time.Second
}

// NodeTerminationPoll is Shutdown.NodeTerminationPoll as a duration.
func (c *Config) NodeTerminationPoll() time.Duration {
	return time.Duration(c.Shutdown.NodeTerminationPoll) * time.Millisecond
}
