package devices

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/features/featuretest"
	"go.dockerworker.dev/docker-worker/schemas"
	"go.dockerworker.dev/docker-worker/worker/devices"
	"go.dockerworker.dev/docker-worker/worker/taskerr"
)

// deviceRoot is a device directory with kvm, shm, two video devices and
// one audio card, made of /dev/null's major and minor.
func deviceRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	names := []string{"kvm", "video0", "video1"}
	for _, n := range devices.AudioNodes(0) {
		names = append(names, "snd/"+n)
	}
	for _, name := range names {
		p := filepath.Join(root, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := syscall.Mknod(p, syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
			t.Skipf("cannot make device nodes: %v", err)
		}
	}
	os.Mkdir(filepath.Join(root, "shm"), 0o755)
	return root
}

func allOn() map[string]bool {
	return map[string]bool{devices.KVM: true, devices.HostSharedMemory: true, devices.LoopbackVideo: true, devices.LoopbackAudio: true}
}

type expander map[string][]string

func (e expander) ExpandScopes(_ context.Context, s []string) ([]string, error) {
	out := append([]string(nil), s...)
	for _, x := range s {
		out = append(out, e[x]...)
	}
	return out, nil
}

func newTask(t *testing.T, f *Feature, devs map[string]bool, scopes ...string) *task {
	t.Helper()
	ft := &featuretest.Task{ID: "T", Info: features.WorkerInfo{ProvisionerID: "p", WorkerType: "w"},
		Pay: &schemas.Payload{Capabilities: &schemas.Capabilities{Devices: devs}}, Scope: scopes}
	tf, err := f.NewTask(ft)
	if err != nil {
		t.Fatal(err)
	}
	return tf.(*task)
}

func TestOwns(t *testing.T) {
	root := deviceRoot(t)
	enabled := allOn()
	enabled[devices.LoopbackAudio] = false
	os.Remove(filepath.Join(root, "kvm"))
	f := New(Config{Devices: devices.Discover(devices.Config{Root: root, Enabled: enabled})})
	want := []string{"capabilities.devices.hostSharedMemory", "capabilities.devices.loopbackVideo"}
	if diff := cmp.Diff(want, f.Owns()); diff != "" {
		t.Errorf("Owns (-want +got):\n%s", diff)
	}
}

func TestPrepare(t *testing.T) {
	root := deviceRoot(t)
	f := New(Config{
		Devices:  devices.Discover(devices.Config{Root: root, Enabled: allOn()}),
		Expander: expander{"assume:role": {"docker-worker:capability:device:loopbackAudio:p/w"}},
	})
	k := newTask(t, f, map[string]bool{"kvm": true, "hostSharedMemory": true, "loopbackVideo": true, "loopbackAudio": true},
		"docker-worker:capability:device:kvm", "docker-worker:capability:device:hostSharedMemory",
		"docker-worker:capability:device:loopbackVideo:p/w", "assume:role")
	var resp features.PrepareResponse
	if err := k.Prepare(t.Context(), &features.PrepareRequest{}, &resp); err != nil {
		t.Fatal(err)
	}
	dev := func(host, ctr string) features.Device {
		return features.Device{HostPath: filepath.Join(root, host), ContainerPath: ctr, Permissions: "rwm"}
	}
	want := []features.Device{
		dev("kvm", "/dev/kvm"),
		dev("snd/controlC0", "/dev/snd/controlC0"), dev("snd/pcmC0D0c", "/dev/snd/pcmC0D0c"), dev("snd/pcmC0D0p", "/dev/snd/pcmC0D0p"),
		dev("snd/pcmC0D1c", "/dev/snd/pcmC0D1c"), dev("snd/pcmC0D1p", "/dev/snd/pcmC0D1p"),
		dev("video0", "/dev/video0"),
	}
	if diff := cmp.Diff(want, resp.Devices); diff != "" {
		t.Errorf("devices (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]features.Mount{{Source: filepath.Join(root, "shm"), Target: "/dev/shm"}}, resp.Mounts); diff != "" {
		t.Errorf("mounts (-want +got):\n%s", diff)
	}
	video := f.cfg.Devices.Manager(devices.LoopbackVideo)
	if video.Held() != 1 || f.cfg.Devices.Manager(devices.LoopbackAudio).Held() != 1 {
		t.Error("devices not held")
	}
	// The second task gets the other video device; the audio card is taken.
	k2 := newTask(t, f, map[string]bool{"loopbackVideo": true}, "docker-worker:capability:device:*")
	var resp2 features.PrepareResponse
	if err := k2.Prepare(t.Context(), &features.PrepareRequest{}, &resp2); err != nil || len(resp2.Devices) != 1 || resp2.Devices[0].ContainerPath != "/dev/video1" {
		t.Fatalf("second task: %v %+v", err, resp2.Devices)
	}
	k3 := newTask(t, f, map[string]bool{"loopbackAudio": true}, "docker-worker:capability:device:*")
	err := k3.Prepare(t.Context(), &features.PrepareRequest{}, &features.PrepareResponse{})
	if !taskerr.Is(err, taskerr.ResourceUnavailableKind) {
		t.Errorf("third task: %v, want resource-unavailable", err)
	}
	for _, x := range []*task{k, k, k2, k3} {
		if err := x.Cleanup(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if video.Held() != 0 || f.cfg.Devices.Manager(devices.LoopbackAudio).Held() != 0 {
		t.Error("devices still held after cleanup")
	}
}

func TestRefusals(t *testing.T) {
	root := deviceRoot(t)
	enabled := allOn()
	enabled[devices.KVM] = false
	f := New(Config{Devices: devices.Discover(devices.Config{Root: root, Enabled: enabled})})
	for _, tc := range []struct {
		name      string
		devs      map[string]bool
		scopes    []string
		malformed bool
		want      []string
	}{
		{name: "scope missing", devs: map[string]bool{"loopbackVideo": true, "loopbackAudio": true},
			scopes: []string{"docker-worker:capability:device:loopbackVideo"},
			want: []string{"Insufficient scopes to attach devices to task container.",
				`Missing scopes: {"AllOf":[{"AnyOf":["docker-worker:capability:device:loopbackAudio","docker-worker:capability:device:loopbackAudio:p/w"]}]}`}},
		{name: "manager off", devs: map[string]bool{"kvm": true}, scopes: []string{"docker-worker:capability:device:*"}, malformed: true,
			want: []string{`capabilities.devices.kvm: device "kvm" is not available on this worker: deviceManagement.kvm.enabled is false`}},
		{name: "unknown device", devs: map[string]bool{"phone": true}, malformed: true,
			want: []string{`device "phone" is not supported by this worker`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newTask(t, f, tc.devs, tc.scopes...)
			var resp features.PrepareResponse
			err := k.Prepare(t.Context(), &features.PrepareRequest{}, &resp)
			if err == nil {
				t.Fatal("no error")
			}
			if got := taskerr.Is(err, taskerr.MalformedPayloadKind); got != tc.malformed {
				t.Errorf("malformed-payload %v, want %v: %v", got, tc.malformed, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			k.Cleanup(t.Context())
			for _, m := range f.cfg.Devices.Managers() {
				if m.Held() != 0 {
					t.Errorf("%s held after a refusal", m.Name())
				}
			}
		})
	}
}

// A device set to false is neither allocated nor checked.
func TestFalseDevice(t *testing.T) {
	f := New(Config{Devices: devices.Discover(devices.Config{Root: deviceRoot(t), Enabled: allOn()})})
	k := newTask(t, f, map[string]bool{"loopbackVideo": false})
	var resp features.PrepareResponse
	if err := k.Prepare(t.Context(), &features.PrepareRequest{}, &resp); err != nil || len(resp.Devices) != 0 {
		t.Errorf("Prepare: %v %+v", err, resp.Devices)
	}
}

func TestRestrictCPU(t *testing.T) {
	f := New(Config{Devices: devices.Discover(devices.Config{Root: t.TempDir(), Enabled: map[string]bool{devices.CPU: true}, CPUs: 2})})
	var got []string
	for range 2 {
		var resp features.PrepareResponse
		if err := newTask(t, f, nil).Prepare(t.Context(), &features.PrepareRequest{}, &resp); err != nil {
			t.Fatal(err)
		}
		got = append(got, resp.CpusetCpus)
	}
	if diff := cmp.Diff([]string{"0", "1"}, got); diff != "" {
		t.Errorf("cpusets (-want +got):\n%s", diff)
	}
	if f.Owns() != nil {
		t.Errorf("Owns %v: cpu is no payload device", f.Owns())
	}
}

func TestAllow(t *testing.T) {
	var logs bytes.Buffer
	f := New(Config{
		Devices: devices.Discover(devices.Config{Root: deviceRoot(t), Enabled: allOn()}),
		Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
	})
	for _, tc := range []struct {
		want, running, allow int
		reason               string
	}{
		{want: 5, running: 0, allow: 1, reason: "2 of 2 loopbackVideo devices free, 1 of 1 loopbackAudio devices free"},
		{want: 5, running: 0, allow: 1, reason: "2 of 2 loopbackVideo devices free, 1 of 1 loopbackAudio devices free"},
		{want: 4, running: 1, allow: 0, reason: "1 of 2 loopbackVideo devices free, 0 of 1 loopbackAudio devices free"},
		{want: 1, running: 0, allow: 1},
	} {
		allow, reason := f.allow(tc.want, tc.running)
		if allow != tc.allow || reason != tc.reason {
			t.Errorf("allow(%d, %d) = %d %q, want %d %q", tc.want, tc.running, allow, reason, tc.allow, tc.reason)
		}
	}
	if n := strings.Count(logs.String(), "[info] host capacity adjusted"); n != 2 {
		t.Errorf("%d capacity lines, want 2 (one per change of a limit that lowers the claim):\n%s", n, logs.String())
	}
}
