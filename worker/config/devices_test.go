package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDevices(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		want map[string]bool
		root string
		err  string
	}{
		{name: "defaults", want: map[string]bool{"cpu": false, "loopbackAudio": true, "loopbackVideo": true, "hostSharedMemory": true, "kvm": true}, root: "/dev"},
		{name: "switched", yaml: "deviceManagement: {loopbackAudio: {enabled: false}, loopbackVideo: {enabled: false}, cpu: {enabled: true}, root: /tmp/devs}\n",
			want: map[string]bool{"cpu": true, "loopbackAudio": false, "loopbackVideo": false, "hostSharedMemory": true, "kvm": true}, root: "/tmp/devs"},
		{name: "restrictCPU", yaml: "restrictCPU: true\n",
			want: map[string]bool{"cpu": true, "loopbackAudio": true, "loopbackVideo": true, "hostSharedMemory": true, "kvm": true}, root: "/dev"},
		{name: "relative root", yaml: "deviceManagement: {root: dev}\n", err: `deviceManagement.root: must be an absolute path, got "dev"`},
		{name: "unknown device", yaml: "deviceManagement: {phone: {enabled: true}}\n", err: "deviceManagement.phone: unknown key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(write(t, identity+"workerId: w1\n"+tc.yaml), env(nil))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, c.DevicesEnabled()); diff != "" {
				t.Errorf("enabled (-want +got):\n%s", diff)
			}
			if c.DeviceManagement.Root != tc.root {
				t.Errorf("root %q, want %q", c.DeviceManagement.Root, tc.root)
			}
		})
	}
}

func TestAllowDisableSeccomp(t *testing.T) {
	if Default().DockerConfig.AllowDisableSeccomp {
		t.Error("allowed by default")
	}
	c, err := Load(write(t, identity+"workerId: w1\ndockerConfig: {allowDisableSeccomp: true}\n"), env(nil))
	if err != nil || !c.DockerConfig.AllowDisableSeccomp {
		t.Errorf("Load: %v, allowDisableSeccomp %v", err, c != nil && c.DockerConfig.AllowDisableSeccomp)
	}
}
