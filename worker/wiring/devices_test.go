package wiring

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"go.dockerworker.dev/docker-worker/worker/config"
)

// The devices a worker serves are those whose manager is on: enabled in
// deviceManagement and present under deviceManagement.root.
func TestPayloadCheckServesDevicesPresent(t *testing.T) {
	root := t.TempDir()
	if err := syscall.Mknod(filepath.Join(root, "kvm"), syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("cannot make device nodes (CI is set; tests run as root): %v", err)
		}
		t.Skipf("cannot make device nodes: %v", err)
	}
	os.Mkdir(filepath.Join(root, "shm"), 0o755)
	for _, tc := range []struct {
		name string
		cfg  func(*config.Config)
		want map[string]bool
	}{
		{name: "defaults", cfg: func(*config.Config) {}, want: map[string]bool{
			"capabilities.devices.kvm": true, "capabilities.devices.hostSharedMemory": true,
			"capabilities.devices.loopbackVideo": false, "capabilities.devices.loopbackAudio": false,
		}},
		{name: "kvm off", cfg: func(c *config.Config) { c.DeviceManagement.KVM.Enabled = false }, want: map[string]bool{
			"capabilities.devices.kvm": false, "capabilities.devices.hostSharedMemory": true,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.DeviceManagement.Root = root
			tc.cfg(cfg)
			check := PayloadCheck(cfg)
			for section, want := range tc.want {
				if _, got := check.Owner(section); got != want {
					t.Errorf("%s owned: %v, want %v", section, got, want)
				}
			}
		})
	}
}
