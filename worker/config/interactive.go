package config

import "net"

// InteractiveConfig configures the interactive feature (a shell into the
// task container over a websocket). Times are seconds, as in docker-worker.
type InteractiveConfig struct {
	// SSL serves the shell socket over TLS (wss) with the ssl certificate.
	SSL bool `yaml:"ssl"`
	// MinTime (s) keeps the container alive at least this long after it
	// started, so users can connect after a quick command ended.
	MinTime int `yaml:"minTime"`
	// ExpirationAfterSession (s) keeps the container alive this long after
	// the last session closed.
	ExpirationAfterSession int `yaml:"expirationAfterSession"`
	// ArtifactName is the prefix of the shell artifact, "shell.html".
	ArtifactName string `yaml:"artifactName"`
	// Port is the port of the shell server (0: a free port the system
	// picks). docker-worker picked a random one in 32768-61000 for each
	// task; a fixed port or range lets a firewall open just that.
	Port int `yaml:"port"`
	// PortRangeEnd, when set, makes Port..PortRangeEnd a range: the first
	// free port is used.
	PortRangeEnd int `yaml:"portRangeEnd"`
	// BindAddress is the IP address the shell server listens on ("" for
	// every interface, as docker-worker). The shell URL names the worker's
	// host, which must reach it.
	BindAddress string `yaml:"bindAddress"`
}

// Interactive defaults (docker-worker's).
const (
	DefaultInteractiveMinTime                = 180
	DefaultInteractiveExpirationAfterSession = 900
	DefaultInteractiveArtifactName           = "private/docker-worker/"
)

func (c *Config) defaultInteractive() {
	c.Interactive = InteractiveConfig{
		SSL:                    true,
		MinTime:                DefaultInteractiveMinTime,
		ExpirationAfterSession: DefaultInteractiveExpirationAfterSession,
		ArtifactName:           DefaultInteractiveArtifactName,
	}
}

// validateInteractive checks the interactive.* keys.
func (c *Config) validateInteractive(bad func(key, format string, args ...any)) {
	i := c.Interactive
	if i.MinTime < 0 {
		bad("interactive.minTime", "must not be negative, got %d", i.MinTime)
	}
	if i.ExpirationAfterSession < 0 {
		bad("interactive.expirationAfterSession", "must not be negative, got %d", i.ExpirationAfterSession)
	}
	if i.Port < 0 || i.Port > 65535 {
		bad("interactive.port", "must be a port number (0 for any free port), got %d", i.Port)
	}
	if e := i.PortRangeEnd; e != 0 {
		switch {
		case i.Port == 0:
			bad("interactive.portRangeEnd", "needs interactive.port, the first port of the range")
		case e < i.Port || e > 65535:
			bad("interactive.portRangeEnd", "must be a port number not below interactive.port (%d), got %d", i.Port, e)
		}
	}
	if a := i.BindAddress; a != "" && net.ParseIP(a) == nil {
		bad("interactive.bindAddress", "%q is not an IP address", a)
	}
	if i.ArtifactName == "" {
		bad("interactive.artifactName", "must not be empty")
	}
	if i.SSL {
		if c.SSL.Certificate == "" {
			bad("ssl.certificate", "is required when interactive.ssl is true")
		}
		if c.SSL.Key == "" {
			bad("ssl.key", "is required when interactive.ssl is true")
		}
	}
}
