package devices

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// mknod makes character device nodes (the major and minor of /dev/null)
// under root; it skips the test when that is not allowed.
func mknod(t *testing.T, root string, names ...string) {
	t.Helper()
	for _, name := range names {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mknod(p, syscall.S_IFCHR|0o666, int(1<<8|3)); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("cannot make device nodes here (CI is set; tests run as root): %v", err)
			}
			t.Skipf("cannot make device nodes here: %v", err)
		}
	}
}

func all() map[string]bool {
	return map[string]bool{KVM: true, HostSharedMemory: true, LoopbackVideo: true, LoopbackAudio: true, CPU: true}
}

func TestDiscover(t *testing.T) {
	root := t.TempDir()
	mknod(t, root, "kvm", "video0", "video2", "video10", "snd/timer")
	mknod(t, root, AudioNodes(0)...)
	mknod(t, root, AudioNodes(1)[:3]...) // card 1 lacks nodes
	for _, n := range AudioNodes(3) {
		mknod(t, root, "snd/"+n)
	}
	for _, n := range AudioNodes(0) {
		mknod(t, root, "snd/"+n)
	}
	os.WriteFile(filepath.Join(root, "video5"), nil, 0o644) // not a device
	os.Mkdir(filepath.Join(root, "shm"), 0o755)

	s := Discover(Config{Root: root, Enabled: all(), CPUs: 3})
	ids := func(name string) []string {
		var out []string
		for _, u := range s.Manager(name).units {
			out = append(out, u.ID)
		}
		return out
	}
	for name, want := range map[string][]string{
		KVM: {"kvm"}, HostSharedMemory: {"hostSharedMemory"}, LoopbackVideo: {"video0", "video2", "video10"},
		LoopbackAudio: {"card 0", "card 3"}, CPU: {"cpu 0", "cpu 1", "cpu 2"},
	} {
		if m := s.Manager(name); m.Off() != "" {
			t.Errorf("%s off: %s", name, m.Off())
		}
		if diff := cmp.Diff(want, ids(name)); diff != "" {
			t.Errorf("%s units (-want +got):\n%s", name, diff)
		}
	}
	card3 := s.Manager(LoopbackAudio).units[1].Nodes
	var paths []string
	for _, n := range card3 {
		if n.HostPath != filepath.Join(root, strings.TrimPrefix(n.ContainerPath, "/dev/")) {
			t.Errorf("node %+v: host and container paths differ", n)
		}
		paths = append(paths, n.ContainerPath)
	}
	if diff := cmp.Diff([]string{"/dev/snd/controlC3", "/dev/snd/pcmC3D0c", "/dev/snd/pcmC3D0p", "/dev/snd/pcmC3D1c", "/dev/snd/pcmC3D1p"}, paths); diff != "" {
		t.Errorf("card 3 nodes (-want +got):\n%s", diff)
	}
	if got := s.Manager(KVM).units[0].Nodes; len(got) != 1 || got[0] != (Node{filepath.Join(root, "kvm"), "/dev/kvm"}) {
		t.Errorf("kvm nodes %+v", got)
	}
	if got := s.Manager(HostSharedMemory).units[0].Binds; len(got) != 1 || got[0] != (Bind{filepath.Join(root, "shm"), "/dev/shm"}) {
		t.Errorf("shm binds %+v", got)
	}
	if s.Manager("phone") != nil {
		t.Error("unknown manager found")
	}
}

func TestOff(t *testing.T) {
	root := t.TempDir()
	mknod(t, root, "kvm")
	for _, tc := range []struct {
		name    string
		enabled map[string]bool
		want    string
	}{
		{KVM, map[string]bool{}, "deviceManagement.kvm.enabled is false"},
		{HostSharedMemory, all(), "shm is not a directory"},
		{LoopbackVideo, all(), "no video devices found"},
		{LoopbackAudio, all(), "no audio devices found"},
		{CPU, map[string]bool{}, "deviceManagement.cpu.enabled is false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := Discover(Config{Root: root, Enabled: tc.enabled}).Manager(tc.name)
			if !strings.Contains(m.Off(), tc.want) {
				t.Errorf("Off() = %q, want %q", m.Off(), tc.want)
			}
			if m.Total() != 0 {
				t.Errorf("Total() = %d", m.Total())
			}
			if _, err := m.Acquire("t"); !errors.Is(err, ErrOff) {
				t.Errorf("Acquire: %v, want ErrOff", err)
			}
		})
	}
}

func TestAcquireRelease(t *testing.T) {
	root := t.TempDir()
	mknod(t, root, "kvm", "video0", "video1")
	s := Discover(Config{Root: root, Enabled: all()})
	v := s.Manager(LoopbackVideo)
	a, err := v.Acquire("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := v.Acquire("b")
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != "video0" || b.ID != "video1" {
		t.Errorf("got %s and %s, want video0 and video1", a.ID, b.ID)
	}
	if _, err := v.Acquire("c"); !errors.Is(err, ErrNoneFree) {
		t.Fatalf("third Acquire: %v, want ErrNoneFree", err)
	}
	a.Release()
	a.Release() // idempotent
	if v.Held() != 1 {
		t.Errorf("Held() = %d after a release, want 1", v.Held())
	}
	c, err := v.Acquire("c")
	if err != nil || c.ID != "video0" {
		t.Fatalf("Acquire after release: %v %v, want video0", c, err)
	}
	// Shared devices have no limit.
	k := s.Manager(KVM)
	for i := range 5 {
		if _, err := k.Acquire(fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	if k.Total() != -1 || k.Held() != 0 {
		t.Errorf("kvm Total %d Held %d, want -1 and 0", k.Total(), k.Held())
	}
}

func TestConcurrentAcquire(t *testing.T) {
	s := Discover(Config{Enabled: map[string]bool{CPU: true}, CPUs: 4})
	m := s.Manager(CPU)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		got  = map[string]int{}
		none int
	)
	for i := range 16 {
		wg.Go(func() {
			l, err := m.Acquire(fmt.Sprint(i))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				none++
				return
			}
			got[l.CPUs]++
		})
	}
	wg.Wait()
	if len(got) != 4 || none != 12 {
		t.Errorf("cpus %v and %d refusals, want 4 distinct and 12", got, none)
	}
	for cpu, n := range got {
		if n != 1 {
			t.Errorf("cpu %s given %d times", cpu, n)
		}
	}
}
