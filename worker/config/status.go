package config

import (
	"net"
	"strconv"
)

// StatusConfig is the worker's HTTP status endpoint: a JSON summary of
// what the worker is doing at / and Prometheus metrics at /metrics. It is
// off unless Listen is set.
type StatusConfig struct {
	// Listen is the host:port the endpoint listens on ("" turns it off).
	// The endpoint has no authentication: 127.0.0.1:PORT keeps it on the
	// host.
	Listen string `yaml:"listen"`
}

// Log formats of logging.format.
const (
	LogFormatJSON = "json"
	LogFormatText = "text"
)

func (c *Config) defaultStatus() {
	c.Logging.Format = LogFormatJSON
}

// validateStatus checks status.listen and logging.format.
func (c *Config) validateStatus(bad func(key, format string, args ...any)) {
	switch c.Logging.Format {
	case LogFormatJSON, LogFormatText:
	default:
		bad("logging.format", "must be %q or %q, got %q", LogFormatJSON, LogFormatText, c.Logging.Format)
	}
	if l := c.Status.Listen; l != "" {
		_, port, err := net.SplitHostPort(l)
		if err != nil {
			bad("status.listen", "must be host:port (127.0.0.1:PORT recommended), got %q", l)
			return
		}
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			bad("status.listen", "port must be a number from 0 to 65535, got %q", port)
		}
	}
}
