package config

import (
	"fmt"
	"net"
)

// LoggingConfig controls the live log.
type LoggingConfig struct {
	// SecureLiveLogging serves the live log over HTTPS with SSL's
	// certificate and key. When they are missing the worker claims nothing.
	SecureLiveLogging bool `yaml:"secureLiveLogging"`
	// LiveLogPort is the port of the live-log server (0: any free port).
	LiveLogPort int `yaml:"liveLogPort"`
	// LiveLogPortRangeEnd, when set, makes LiveLogPort..LiveLogPortRangeEnd
	// a range: the first free port is used.
	LiveLogPortRangeEnd int `yaml:"liveLogPortRangeEnd"`
	// LiveLogBindAddress is the address the live-log server listens on
	// ("" for every interface).
	LiveLogBindAddress string `yaml:"liveLogBindAddress"`
	// Format is the form of the worker's own log records: "json" (one
	// object a line, the default) or "text" (slog's key=value lines).
	Format string `yaml:"format"`
}

// SSLConfig names the TLS certificate and key files.
type SSLConfig struct {
	Certificate string `yaml:"certificate"`
	Key         string `yaml:"key"`
}

// ArtifactsConfig controls payload artifact uploads.
type ArtifactsConfig struct {
	// SkipCompressionExtensions are name suffixes uploaded without gzip.
	SkipCompressionExtensions []string `yaml:"skipCompressionExtensions"`
	// UploadParallelism bounds concurrent artifact uploads per task.
	UploadParallelism int `yaml:"uploadParallelism"`
	// StorageType is how artifact bytes reach the queue: "s3" (a PUT to the
	// URL createArtifact returns) or "object" (through the object service:
	// createUpload, PUT, finishUpload, then the queue's finishArtifact).
	StorageType string `yaml:"storageType"`
	// ArchiveOnly reads artifacts only through the Docker archive API,
	// never straight from the stopped container's overlay2 layers.
	ArchiveOnly bool `yaml:"archiveOnly"`
}

// Artifact storage types.
const (
	StorageS3     = "s3"
	StorageObject = "object"
)

// Defaults of the output settings (docker-worker's where it had the key).
const (
	DefaultSSLCertificate            = "/etc/star_taskcluster-worker_net.crt"
	DefaultSSLKey                    = "/etc/star_taskcluster-worker_net.key"
	DefaultEd25519SigningKeyLocation = "/etc/docker-worker-ed25519-cot-signing-key.key"
	DefaultUploadParallelism         = 4
)

// defaultSkipCompression is docker-worker's skip list, 'lz4' without a dot
// included.
func defaultSkipCompression() []string {
	return []string{
		".7z", ".bz2", ".deb", ".dmg", ".flv", ".gif", ".gz", ".jpeg", ".jpg", ".png", ".swf",
		".tbz", ".tgz", ".webp", ".whl", ".woff", ".woff2", ".xz", ".zip", ".zst", "lz4",
	}
}

func (c *Config) defaultOutputs() {
	c.SSL = SSLConfig{Certificate: DefaultSSLCertificate, Key: DefaultSSLKey}
	c.Artifacts = ArtifactsConfig{
		SkipCompressionExtensions: defaultSkipCompression(),
		UploadParallelism:         DefaultUploadParallelism,
		StorageType:               StorageS3,
	}
	c.Ed25519SigningKeyLocation = DefaultEd25519SigningKeyLocation
}

// validateOutputs checks the live log, artifact and chain-of-trust keys.
func (c *Config) validateOutputs(bad func(key, format string, args ...any)) {
	l := c.Logging
	if l.LiveLogPort < 0 || l.LiveLogPort > 65535 {
		bad("logging.liveLogPort", "must be a port number (0 for any free port), got %d", l.LiveLogPort)
	}
	if e := l.LiveLogPortRangeEnd; e != 0 {
		switch {
		case l.LiveLogPort == 0:
			bad("logging.liveLogPortRangeEnd", "needs logging.liveLogPort, the first port of the range")
		case e < l.LiveLogPort || e > 65535:
			bad("logging.liveLogPortRangeEnd", "must be a port number not below logging.liveLogPort (%d), got %d", l.LiveLogPort, e)
		}
	}
	if a := l.LiveLogBindAddress; a != "" && net.ParseIP(a) == nil {
		bad("logging.liveLogBindAddress", "%q is not an IP address", a)
	}
	if l.SecureLiveLogging {
		if c.SSL.Certificate == "" {
			bad("ssl.certificate", "is required when logging.secureLiveLogging is true")
		}
		if c.SSL.Key == "" {
			bad("ssl.key", "is required when logging.secureLiveLogging is true")
		}
	}
	switch c.Artifacts.StorageType {
	case StorageS3, StorageObject:
	default:
		bad("artifacts.storageType", "must be %q or %q, got %q", StorageS3, StorageObject, c.Artifacts.StorageType)
	}
	if c.Artifacts.UploadParallelism < 1 {
		bad("artifacts.uploadParallelism", "must be at least 1, got %d", c.Artifacts.UploadParallelism)
	}
	for i, s := range c.Artifacts.SkipCompressionExtensions {
		if s == "" {
			bad(fmt.Sprintf("artifacts.skipCompressionExtensions[%d]", i), "must not be empty")
		}
	}
}
