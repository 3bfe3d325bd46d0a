package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestOutputKeys(t *testing.T) {
	c, err := Load(write(t, good+`
logging: {secureLiveLogging: true, liveLogPort: 60023, liveLogPortRangeEnd: 60099, liveLogBindAddress: 127.0.0.1}
ssl: {certificate: /etc/live.crt, key: /etc/live.key}
artifacts: {skipCompressionExtensions: [".zst", ".bin"], uploadParallelism: 8, storageType: s3}
ed25519SigningKeyLocation: /etc/cot.key
`), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := LoggingConfig{SecureLiveLogging: true, LiveLogPort: 60023, LiveLogPortRangeEnd: 60099, LiveLogBindAddress: "127.0.0.1", Format: "json"}
	if diff := cmp.Diff(want, c.Logging); diff != "" {
		t.Errorf("logging (-want +got):\n%s", diff)
	}
	if c.SSL.Certificate != "/etc/live.crt" || c.SSL.Key != "/etc/live.key" || c.Ed25519SigningKeyLocation != "/etc/cot.key" {
		t.Errorf("ssl %+v, key %q", c.SSL, c.Ed25519SigningKeyLocation)
	}
	if diff := cmp.Diff(ArtifactsConfig{SkipCompressionExtensions: []string{".zst", ".bin"}, UploadParallelism: 8, StorageType: "s3"}, c.Artifacts); diff != "" {
		t.Errorf("artifacts (-want +got):\n%s", diff)
	}
}

func TestOutputDefaults(t *testing.T) {
	c := Default()
	if c.Logging.SecureLiveLogging || c.Logging.LiveLogPort != 0 || c.Artifacts.StorageType != "s3" ||
		c.Artifacts.UploadParallelism != 4 || c.SSL.Certificate != "/etc/star_taskcluster-worker_net.crt" ||
		c.Ed25519SigningKeyLocation != "/etc/docker-worker-ed25519-cot-signing-key.key" {
		t.Errorf("defaults %+v %+v %+v", c.Logging, c.Artifacts, c.SSL)
	}
	skip := c.Artifacts.SkipCompressionExtensions
	if len(skip) != 21 || skip[len(skip)-1] != "lz4" {
		t.Errorf("skip list %v", skip)
	}
}

func TestOutputProblemsAllReported(t *testing.T) {
	_, err := Load(write(t, good+`
logging: {secureLiveLogging: true, liveLogPort: 70000, liveLogPortRangeEnd: 10, liveLogBindAddress: nowhere}
ssl: {certificate: "", key: ""}
artifacts: {skipCompressionExtensions: [""], uploadParallelism: 0, storageType: azure}
`), env(nil))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"logging.liveLogPort: must be a port number",
		"logging.liveLogPortRangeEnd: must be a port number not below",
		`logging.liveLogBindAddress: "nowhere" is not an IP address`,
		"ssl.certificate: is required when logging.secureLiveLogging is true",
		"ssl.key: is required when logging.secureLiveLogging is true",
		`artifacts.storageType: must be "s3" or "object", got "azure"`,
		"artifacts.uploadParallelism: must be at least 1",
		"artifacts.skipCompressionExtensions[0]: must not be empty",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
