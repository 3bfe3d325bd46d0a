// Package devices discovers the host devices tasks may ask for and hands
// them out: kvm (/dev/kvm) and hostSharedMemory (a bind of /dev/shm) are
// shared by every task; a loopbackVideo device (/dev/videoN), a
// loopbackAudio card (the five nodes of snd-aloop card N under /dev/snd)
// and a CPU (restrictCPU) belong to one task at a time.
//
// Discovery happens once, under a device root (/dev by default, a test
// directory in tests). A manager that is not enabled, or whose device
// nodes are absent, is off and says why; unlike docker-worker, which
// stopped when a video or audio directory held no device, a worker with an
// off manager runs and refuses the tasks that ask for that device.
package devices

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"sync"
)

// Device manager names: the keys of payload.capabilities.devices and of
// the deviceManagement config (cpu is restrictCPU's).
const (
	KVM              = "kvm"
	HostSharedMemory = "hostSharedMemory"
	LoopbackVideo    = "loopbackVideo"
	LoopbackAudio    = "loopbackAudio"
	CPU              = "cpu"
)

// Names are the managers, in the order they are listed.
var Names = []string{KVM, HostSharedMemory, LoopbackVideo, LoopbackAudio, CPU}

// DefaultRoot is where device nodes are found.
const DefaultRoot = "/dev"

// ErrNoneFree is returned by Acquire when every device of an exclusive
// manager is held.
var ErrNoneFree = errors.New("no free device")

// ErrOff is returned by Acquire on a manager that is off.
var ErrOff = errors.New("device manager is off")

// Config is what discovery looks at.
type Config struct {
	// Root is the device directory ("" for DefaultRoot).
	Root string
	// Enabled are the managers switched on (deviceManagement.<name>.enabled);
	// a name not in the map is off.
	Enabled map[string]bool
	// CPUs is how many CPUs the cpu manager hands out (0: the CPUs of this
	// machine).
	CPUs int
}

// Node is a device node made available in the container.
type Node struct {
	HostPath      string
	ContainerPath string
}

// Bind is a host path bind-mounted into the container.
type Bind struct {
	Source string
	Target string
}

// Unit is what one allocation gives the container.
type Unit struct {
	// ID names the unit within its manager ("video0", "card 1", "cpu 3",
	// or the manager's name for a shared one).
	ID    string
	Nodes []Node
	Binds []Bind
	CPUs  string // cpuset ("3") for the cpu manager
}

// Manager hands out the devices of one kind. Its methods are safe for
// concurrent use.
type Manager struct {
	name      string
	exclusive bool
	off       string
	units     []Unit // exclusive: the pool; shared: one unit

	mu   sync.Mutex
	held map[string]string // unit ID → holder
}

// Name is the manager's name (a key of payload.capabilities.devices).
func (m *Manager) Name() string { return m.name }

// Exclusive reports whether a unit belongs to one task at a time.
func (m *Manager) Exclusive() bool { return m.exclusive }

// Off is why the manager is off ("" when it is on).
func (m *Manager) Off() string { return m.off }

// Total is how many units an exclusive manager has (0 when off; -1 for a
// shared manager, which has no limit).
func (m *Manager) Total() int {
	switch {
	case m.off != "":
		return 0
	case !m.exclusive:
		return -1
	}
	return len(m.units)
}

// Held is how many units are held now.
func (m *Manager) Held() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.held)
}

// Acquire gives holder a unit: the first free one of an exclusive manager,
// the only one of a shared manager.
func (m *Manager) Acquire(holder string) (*Lease, error) {
	if m.off != "" {
		return nil, fmt.Errorf("%s: %w: %s", m.name, ErrOff, m.off)
	}
	if !m.exclusive {
		return &Lease{Unit: m.units[0]}, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, u := range m.units {
		if _, ok := m.held[u.ID]; !ok {
			m.held[u.ID] = holder
			return &Lease{Unit: u, m: m}, nil
		}
	}
	return nil, fmt.Errorf("%s: %w (%d held)", m.name, ErrNoneFree, len(m.held))
}

// Lease is one acquired unit.
type Lease struct {
	Unit
	m    *Manager // nil for a shared unit
	once sync.Once
}

// Release gives the unit back. Idempotent.
func (l *Lease) Release() {
	if l == nil || l.m == nil {
		return
	}
	l.once.Do(func() {
		l.m.mu.Lock()
		delete(l.m.held, l.ID)
		l.m.mu.Unlock()
	})
}

// Set is every manager of a worker.
type Set struct {
	managers []*Manager
}

// Discover looks for the devices of every manager under cfg.Root. It only
// reads the device directory.
func Discover(cfg Config) *Set {
	root := cfg.Root
	if root == "" {
		root = DefaultRoot
	}
	s := &Set{}
	for _, name := range Names {
		m := &Manager{name: name, held: map[string]string{}}
		switch name {
		case KVM:
			m.units, m.off = kvm(root)
		case HostSharedMemory:
			m.units, m.off = sharedMemory(root)
		case LoopbackVideo:
			m.exclusive = true
			m.units, m.off = video(root)
		case LoopbackAudio:
			m.exclusive = true
			m.units, m.off = audio(root)
		case CPU:
			m.exclusive = true
			m.units, m.off = cpus(cfg.CPUs)
		}
		if !cfg.Enabled[name] {
			m.units, m.off = nil, fmt.Sprintf("deviceManagement.%s.enabled is false", name)
		}
		s.managers = append(s.managers, m)
	}
	return s
}

// Manager returns the manager called name (nil for an unknown name).
func (s *Set) Manager(name string) *Manager {
	if s == nil {
		return nil
	}
	for _, m := range s.managers {
		if m.name == name {
			return m
		}
	}
	return nil
}

// Managers are every manager, in the order of Names.
func (s *Set) Managers() []*Manager {
	if s == nil {
		return nil
	}
	return slices.Clone(s.managers)
}

func isCharDevice(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode()&fs.ModeDevice != 0 && fi.Mode()&fs.ModeCharDevice != 0
}

func kvm(root string) ([]Unit, string) {
	p := filepath.Join(root, "kvm")
	if !isCharDevice(p) {
		return nil, p + " is not a character device"
	}
	return []Unit{{ID: KVM, Nodes: []Node{{HostPath: p, ContainerPath: "/dev/kvm"}}}}, ""
}

func sharedMemory(root string) ([]Unit, string) {
	p := filepath.Join(root, "shm")
	if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
		return nil, p + " is not a directory"
	}
	return []Unit{{ID: HostSharedMemory, Binds: []Bind{{Source: p, Target: "/dev/shm"}}}}, ""
}

// numbered lists the numbers N of the character devices <dir>/<prefix>N,
// in increasing order.
func numbered(dir, prefix string) ([]int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(prefix) + `([0-9]+)$`)
	var out []int
	for _, e := range entries {
		m := re.FindStringSubmatch(e.Name())
		if m == nil || !isCharDevice(filepath.Join(dir, e.Name())) {
			continue
		}
		if n, err := strconv.Atoi(m[1]); err == nil {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

func video(root string) ([]Unit, string) {
	ns, err := numbered(root, "video")
	if err != nil {
		return nil, fmt.Sprintf("cannot list %s: %v", root, err)
	}
	var units []Unit
	for _, n := range ns {
		name := "video" + strconv.Itoa(n)
		units = append(units, Unit{ID: name, Nodes: []Node{{HostPath: filepath.Join(root, name), ContainerPath: "/dev/" + name}}})
	}
	if len(units) == 0 {
		return nil, "no video devices found (" + filepath.Join(root, "video[0-9]+") + "); is v4l2loopback loaded?"
	}
	return units, ""
}

// AudioNodes are the nodes of snd-aloop card n under /dev/snd.
func AudioNodes(n int) []string {
	c := strconv.Itoa(n)
	return []string{"controlC" + c, "pcmC" + c + "D0c", "pcmC" + c + "D0p", "pcmC" + c + "D1c", "pcmC" + c + "D1p"}
}

// audio finds the snd-aloop cards whose five nodes are all present.
func audio(root string) ([]Unit, string) {
	dir := filepath.Join(root, "snd")
	ns, err := numbered(dir, "controlC")
	if err != nil {
		return nil, fmt.Sprintf("no audio devices found: cannot list %s: %v; is snd-aloop loaded?", dir, err)
	}
	var units []Unit
	for _, n := range ns {
		u := Unit{ID: "card " + strconv.Itoa(n)}
		for _, name := range AudioNodes(n) {
			p := filepath.Join(dir, name)
			if !isCharDevice(p) {
				u.Nodes = nil
				break
			}
			u.Nodes = append(u.Nodes, Node{HostPath: p, ContainerPath: "/dev/snd/" + name})
		}
		if u.Nodes != nil {
			units = append(units, u)
		}
	}
	if len(units) == 0 {
		return nil, "no audio devices found (" + filepath.Join(dir, "controlC[0-9]+") + " with its pcm nodes); is snd-aloop loaded?"
	}
	return units, ""
}

func cpus(n int) ([]Unit, string) {
	if n <= 0 {
		n = runtime.NumCPU()
	}
	units := make([]Unit, n)
	for i := range units {
		id := strconv.Itoa(i)
		units[i] = Unit{ID: "cpu " + id, CPUs: id}
	}
	return units, ""
}
