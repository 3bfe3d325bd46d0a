package config

import "path/filepath"

// DeviceManagementConfig switches the device managers on and off
// (docker-worker's deviceManagement.<name>.enabled) and says where device
// nodes are found.
type DeviceManagementConfig struct {
	// Root is the directory holding the device nodes (/dev; tests use
	// a directory of their own).
	Root             string       `yaml:"root"`
	CPU              DeviceConfig `yaml:"cpu"`
	LoopbackAudio    DeviceConfig `yaml:"loopbackAudio"`
	LoopbackVideo    DeviceConfig `yaml:"loopbackVideo"`
	HostSharedMemory DeviceConfig `yaml:"hostSharedMemory"`
	KVM              DeviceConfig `yaml:"kvm"`
}

// DeviceConfig switches one device manager.
type DeviceConfig struct {
	Enabled bool `yaml:"enabled"`
}

// DefaultDeviceRoot is deviceManagement.root's default.
const DefaultDeviceRoot = "/dev"

// defaultDevices sets docker-worker's defaults: every manager on but the
// cpu one (which restrictCPU switches on).
func (c *Config) defaultDevices() {
	c.DeviceManagement = DeviceManagementConfig{
		Root:             DefaultDeviceRoot,
		LoopbackAudio:    DeviceConfig{Enabled: true},
		LoopbackVideo:    DeviceConfig{Enabled: true},
		HostSharedMemory: DeviceConfig{Enabled: true},
		KVM:              DeviceConfig{Enabled: true},
	}
}

// DevicesEnabled are the device managers switched on, by name; cpu is on
// with restrictCPU too.
func (c *Config) DevicesEnabled() map[string]bool {
	d := c.DeviceManagement
	return map[string]bool{
		"cpu":              d.CPU.Enabled || c.RestrictCPU,
		"loopbackAudio":    d.LoopbackAudio.Enabled,
		"loopbackVideo":    d.LoopbackVideo.Enabled,
		"hostSharedMemory": d.HostSharedMemory.Enabled,
		"kvm":              d.KVM.Enabled,
	}
}

func (c *Config) validateDevices(bad func(key, format string, args ...any)) {
	if r := c.DeviceManagement.Root; r == "" || !filepath.IsAbs(r) {
		bad("deviceManagement.root", "must be an absolute path, got %q", r)
	}
}
