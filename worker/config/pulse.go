package config

import (
	"net/url"
)

// PulseConfig connects the worker to the deployment's Pulse (RabbitMQ)
// broker, so that a run the queue cancels is stopped as soon as the
// task-exception message arrives instead of at the next status poll.
type PulseConfig struct {
	// URL is the broker, amqp://user:password@host:port/vhost (or
	// amqps://). Empty: no Pulse consumer; status polling and reclaims
	// notice cancellations.
	URL string `yaml:"url"`
}

func (c *Config) defaultPulse() { c.Pulse = PulseConfig{} }

// validatePulse checks the pulse.* keys. Problems never quote the URL,
// which holds the password.
func (c *Config) validatePulse(bad func(key, format string, args ...any)) {
	if c.Pulse.URL == "" {
		return
	}
	u, err := url.Parse(c.Pulse.URL)
	switch {
	case err != nil:
		bad("pulse.url", "is not a URL")
	case u.Scheme != "amqp" && u.Scheme != "amqps":
		bad("pulse.url", "must be an amqp:// or amqps:// URL, got scheme %q", u.Scheme)
	case u.Host == "":
		bad("pulse.url", "must name the broker's host")
	}
}

// PulseRedacted is pulse.url without its password, for logs.
func (c *Config) PulseRedacted() string {
	u, err := url.Parse(c.Pulse.URL)
	if err != nil {
		return "(invalid URL)"
	}
	return u.Redacted()
}
