package config

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
