package wiring

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"go.dockerworker.dev/docker-worker/worker/config"
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
