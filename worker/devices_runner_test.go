package worker_test

// Runner-tier tests of devices: the real worker with the devices feature
// over a test device directory of real character nodes, the embedded
// queue and the scripted Docker, in fake time.

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	devicesfeature "go.dockerworker.dev/docker-worker/features/devices"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/devices"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockerfake"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// testDevices is a devices feature over a directory holding kvm, shm and
// the video devices named, made of /dev/null's major and minor.
type testDevices struct {
	root string
	set  *devices.Set
	f    *devicesfeature.Feature
	logs *logBuffer
}

func newTestDevices(t *testing.T, videos ...string) *testDevices {
	t.Helper()
	root := t.TempDir()
	for _, name := range append([]string{"kvm"}, videos...) {
		if err := syscall.Mknod(filepath.Join(root, name), syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("cannot make device nodes (CI is set; tests run as root): %v", err)
			}
			t.Skipf("cannot make device nodes: %v", err)
		}
	}
	os.Mkdir(filepath.Join(root, "shm"), 0o755)
	d := &testDevices{root: root, logs: &logBuffer{}}
	d.set = devices.Discover(devices.Config{Root: root, Enabled: map[string]bool{
		devices.KVM: true, devices.HostSharedMemory: true, devices.LoopbackVideo: true, devices.LoopbackAudio: true,
	}})
	d.f = devicesfeature.New(devicesfeature.Config{Devices: d.set, Logger: slog.New(slog.NewJSONHandler(d.logs, nil))})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("devices log:\n%s", d.logs.String())
		}
	})
	return d
}

func devicePayload(maxRunTime int, devs map[string]bool) map[string]any {
	p := payload(maxRunTime, "true")
	p["capabilities"] = map[string]any{"devices": devs}
	return p
}

func TestDevicesInContainerSpec(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newTestDevices(t, "video0")
		e := start(t, setup{extra: []features.Feature{d.f}})
		id := e.createTaskFor(e.cfg.WorkerType, devicePayload(60, map[string]bool{"kvm": true, "hostSharedMemory": true, "loopbackVideo": true}),
			[]string{"docker-worker:capability:device:*"})
		if r := e.waitRun(id, 0).Runs[0]; r.State != tc.StateCompleted {
			t.Fatalf("run %+v", r)
		}
		cs := e.docker.Containers()
		if len(cs) != 1 {
			t.Fatalf("%d containers", len(cs))
		}
		var got []string
		for _, dev := range cs[0].Spec.Devices {
			got = append(got, dev.PathOnHost+":"+dev.PathInContainer+":"+dev.CgroupPermissions)
		}
		want := []string{d.root + "/kvm:/dev/kvm:rwm", d.root + "/video0:/dev/video0:rwm"}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("devices %v, want %v", got, want)
		}
		if b := cs[0].Spec.Binds; len(b) != 1 || b[0] != d.root+"/shm:/dev/shm" {
			t.Errorf("binds %v, want the shm bind", b)
		}
		if n := d.set.Manager(devices.LoopbackVideo).Held(); n != 0 {
			t.Errorf("%d video devices held after the run", n)
		}
	})
}

func TestDevicesRefused(t *testing.T) {
	for _, tc := range []struct {
		name, state, reason, log string
		devs                     map[string]bool
		scopes                   []string
	}{
		{name: "scope missing", state: "failed", reason: "failed", log: "Insufficient scopes to attach devices to task container.",
			devs: map[string]bool{"loopbackVideo": true, "kvm": true}, scopes: []string{"docker-worker:capability:device:loopbackVideo"}},
		{name: "no audio device", state: "exception", reason: "malformed-payload", log: "loopbackAudio",
			devs: map[string]bool{"loopbackAudio": true}, scopes: []string{"docker-worker:capability:device:*"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				d := newTestDevices(t, "video0")
				e := start(t, setup{extra: []features.Feature{d.f}})
				id := e.createTaskFor(e.cfg.WorkerType, devicePayload(60, tc.devs), tc.scopes)
				if r := e.waitRun(id, 0).Runs[0]; r.State != tc.state || r.ReasonResolved != tc.reason {
					t.Fatalf("run %+v, want %s/%s", r, tc.state, tc.reason)
				}
				log, _ := e.taskLog(id, 0)
				if !strings.Contains(log, tc.log) {
					t.Errorf("task log lacks %q:\n%s", tc.log, log)
				}
				if n := len(e.docker.Containers()); n != 0 {
					t.Errorf("%d containers created", n)
				}
				if n := d.set.Manager(devices.LoopbackVideo).Held(); n != 0 {
					t.Errorf("%d video devices held", n)
				}
			})
		})
	}
}

// With one video device a worker of capacity 3 runs one task at a time,
// and says so.
func TestDevicesLimitCapacity(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newTestDevices(t, "video0")
		e := start(t, setup{
			extra:  []features.Feature{d.f},
			config: func(cfg *config.Config) { cfg.Capacity = 3 },
			script: func(spec docker.ContainerSpec) dockerfake.Script {
				return dockerfake.Script{Steps: []dockerfake.Step{{After: time.Minute}}}
			},
		})
		p := devicePayload(600, map[string]bool{"loopbackVideo": true})
		var ids []string
		for range 3 {
			ids = append(ids, e.createTaskFor(e.cfg.WorkerType, p, []string{"docker-worker:capability:device:loopbackVideo"}))
		}
		e.waitRunning()
		time.Sleep(30 * time.Second)
		if n := len(e.docker.Running()); n != 1 {
			t.Errorf("%d containers running, want 1", n)
		}
		for _, id := range ids {
			if r := e.waitRun(id, 0).Runs[0]; r.State != tc.StateCompleted {
				t.Errorf("run %+v", r)
			}
		}
		cs := e.docker.Containers()
		for i := 1; i < len(cs); i++ {
			if cs[i].Started.Before(cs[i-1].Stopped) {
				t.Errorf("container %d started at %v, before container %d stopped at %v", i, cs[i].Started, i-1, cs[i-1].Stopped)
			}
		}
		if d.logs.count("[info] host capacity adjusted") == 0 {
			t.Error("capacity adjustment not logged")
		}
		if n := d.set.Manager(devices.LoopbackVideo).Held(); n != 0 {
			t.Errorf("%d video devices held at the end", n)
		}
	})
}
