package wiring

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
)

// The payload features, in docker-worker's order; the always-on built-ins
// are not config keys.
func TestFeatureNames(t *testing.T) {
	want := []string{"localLiveLog", "artifacts", "chainOfTrust", "bulkLog", "taskclusterProxy", "dind", "dockerSave", "interactive", "allowPtrace"}
	if diff := cmp.Diff(want, FeatureNames()); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
}

func TestCheckFeatureKeys(t *testing.T) {
	cfg := config.Default()
	on := true
	cfg.Features = map[string]config.FeatureConfig{"bulkLog": {Enabled: &on}, "backingLog": {Enabled: &on}, "image": {}}
	err := CheckFeatureKeys(cfg, nil)
	if err == nil {
		t.Fatal("always-on built-ins accepted as feature keys")
	}
	for _, want := range []string{"features.backingLog: is not a feature", "features.image: is not a feature"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "features.bulkLog") {
		t.Errorf("bulkLog refused: %v", err)
	}
}

// Every part the wired features serve passes the payload check; what none
// serves does not.
func TestPayloadCheckServesTheBuiltIns(t *testing.T) {
	cfg := config.Default()
	cfg.DeviceManagement.KVM.Enabled = false // devices are served when their manager is on
	check := PayloadCheck(cfg)
	for section, want := range map[string]bool{
		"image.docker-image":          true,
		"capabilities.privileged":     true,
		"features.artifacts":          true,
		"features.localLiveLog":       true,
		"features.chainOfTrust":       true,
		"features.bulkLog":            true,
		"image.task-image":            true,
		"image.indexed-image":         true,
		"cache":                       true,
		"capabilities.devices.kvm":    false,
		"features.taskclusterProxy":   true,
		"capabilities.disableSeccomp": true,
	} {
		if _, got := check.Owner(section); got != want {
			t.Errorf("%s owned: %v, want %v", section, got, want)
		}
	}
}

// Secure live logging with a certificate that cannot be loaded starts no
// live log server; the worker is built and holds its claims at zero (the
// feature's before-claim hook, tested in the runner tier).
func TestBuildWithUnusableCertificate(t *testing.T) {
	dc := dockertest.Require(t)
	cfg := config.Default()
	cfg.RootURL = "http://127.0.0.1:1"
	cfg.Logging.SecureLiveLogging = true
	cfg.Logging.LiveLogBindAddress = "127.0.0.1"
	cfg.SSL.Certificate = filepath.Join(t.TempDir(), "absent.crt")
	cfg.SSL.Key = filepath.Join(t.TempDir(), "absent.key")
	cfg.StateDir = t.TempDir()
	var logs bytes.Buffer
	w, err := Build(t.Context(), cfg, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)), Docker: dc})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.LiveLog != nil {
		t.Error("a live log server started without a usable certificate")
	}
	if !strings.Contains(logs.String(), "[alert-operator] ssl certificate error") {
		t.Errorf("no operator alert:\n%s", logs.String())
	}
}
