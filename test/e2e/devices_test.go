package e2e

// Ports of docker-worker's device_link_test and isolated_mode_test on a
// real dockerd. This host has no v4l2loopback or snd-aloop, so the
// devices are character nodes the test makes under a device root of its
// own (the major and minor of /dev/null).

import (
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/devices"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// deviceConfig is a worker config whose device root holds kvm, shm,
// video0 and audio card 0.
func deviceConfig(t *testing.T, q *queueEnv, workerType string) *config.Config {
	t.Helper()
	root := t.TempDir()
	names := []string{"kvm", "video0"}
	for _, n := range devices.AudioNodes(0) {
		names = append(names, "snd/"+n)
	}
	for _, name := range names {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mknod(p, syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("cannot make device nodes (CI is set; tests run as root): %v", err)
			}
			t.Skipf("cannot make device nodes: %v", err)
		}
	}
	if err := os.Mkdir(filepath.Join(root, "shm"), 0o1777); err != nil {
		t.Fatal(err)
	}
	cfg := q.workerConfig(workerType)
	cfg.DeviceManagement.Root = root
	return cfg
}

// The container sees each device asked for as a character device at
// docker-worker's path, and a file the host put in the shared memory
// directory.
func TestDevicesLinked(t *testing.T) {
	q := startQueue(t, nil)
	cfg := deviceConfig(t, q, "devices")
	os.WriteFile(filepath.Join(cfg.DeviceManagement.Root, "shm", "from-host"), []byte("hi"), 0o644)
	startWorker(t, q, cfg)

	script := `set -e
for d in /dev/kvm /dev/video0 /dev/snd/controlC0 /dev/snd/pcmC0D0c /dev/snd/pcmC0D0p /dev/snd/pcmC0D1c /dev/snd/pcmC0D1p; do
  test -c $d || { echo "$d is not a character device"; exit 1; }
done
echo > /dev/video0
test "$(cat /dev/shm/from-host)" = hi
echo devices-ok`
	p := shell(script, 60)
	p["capabilities"] = map[string]any{"devices": map[string]bool{"kvm": true, "loopbackVideo": true, "loopbackAudio": true, "hostSharedMemory": true}}
	id := q.create(t, withScopes(newTask(cfg, p),
		"docker-worker:capability:device:kvm", "docker-worker:capability:device:hostSharedMemory",
		"docker-worker:capability:device:loopbackAudio",
		"docker-worker:capability:device:loopbackVideo:"+cfg.ProvisionerID+"/"+cfg.WorkerType))
	s := q.waitRun(t, id, 0, 2*time.Minute)
	log := q.logOf(t, id, 0, "")
	if s.Runs[0].State != tc.StateCompleted {
		t.Fatalf("run %+v; log:\n%s", s.Runs[0], log)
	}
	mustContain(t, log, "devices-ok")

	// Without a device, the container has none of them.
	id = q.create(t, newTask(cfg, shell(`test ! -e /dev/video0 && test ! -e /dev/kvm`, 60)))
	wantState(t, q.waitRun(t, id, 0, 2*time.Minute), 0, tc.StateCompleted, "")
}

// docker-worker's "task failed when all scopes not specified".
func TestDevicesScopesMissing(t *testing.T) {
	q := startQueue(t, nil)
	cfg := deviceConfig(t, q, "devices-scopes")
	startWorker(t, q, cfg)
	p := shell("true", 60)
	p["capabilities"] = map[string]any{"devices": map[string]bool{"loopbackVideo": true, "loopbackAudio": true}}
	id := q.create(t, withScopes(newTask(cfg, p), "docker-worker:capability:device:loopbackVideo"))
	wantState(t, q.waitRun(t, id, 0, 2*time.Minute), 0, tc.StateFailed, "failed")
	mustContain(t, q.logOf(t, id, 0, ""), "Insufficient scopes to attach devices to task container.")
}

// docker-worker's isolated_mode_test: with restrictCPU each task sees one
// CPU, cycling through them.
func TestRestrictCPU(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("one CPU: nothing to restrict")
	}
	q := startQueue(t, nil)
	cfg := q.workerConfig("restrict-cpu")
	cfg.RestrictCPU = true
	startWorker(t, q, cfg)
	for range 3 {
		id := q.create(t, newTask(cfg, shell(`test "$(nproc)" = 1 && grep -E '^Cpus_allowed_list:[[:space:]]+[0-9]+$' /proc/self/status`, 60)))
		s := q.waitRun(t, id, 0, 2*time.Minute)
		if s.Runs[0].State != tc.StateCompleted {
			t.Fatalf("run %+v; log:\n%s", s.Runs[0], q.logOf(t, id, 0, ""))
		}
	}
}

// docker-worker's "host capacity adjusted when device capacity is less
// than worker capacity": one video device, capacity 3; three video tasks
// run one after the other.
func TestDevicesAdjustHostCapacity(t *testing.T) {
	q := startQueue(t, nil)
	cfg := deviceConfig(t, q, "devices-capacity")
	cfg.Capacity = 3
	we := startWorker(t, q, cfg)
	p := shell(`test -c /dev/video0 && sleep 1`, 60)
	p["capabilities"] = map[string]any{"devices": map[string]bool{"loopbackVideo": true}}
	var ids []string
	for range 3 {
		ids = append(ids, q.create(t, withScopes(newTask(cfg, p), "docker-worker:capability:device:loopbackVideo")))
	}
	var runs []tc.Run
	for _, id := range ids {
		s := q.waitRun(t, id, 0, 2*time.Minute)
		wantState(t, s, 0, tc.StateCompleted, "")
		runs = append(runs, s.Runs[0])
	}
	we.waitLogged(t, "[info] host capacity adjusted", 1, 10*time.Second)
	// One device: no two runs overlap.
	for i, a := range runs {
		for _, b := range runs[i+1:] {
			if a.Started.Before(b.Resolved) && b.Started.Before(a.Resolved) {
				t.Errorf("runs overlap: %+v and %+v", a, b)
			}
		}
	}
}
