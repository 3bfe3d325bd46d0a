package metrics

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Host reads the host's CPU, memory and disk for the host point, from
// /proc and statfs(2): no dependency, no subprocess. Its methods may be
// called concurrently.
type Host struct {
	// Proc is the proc file system ("" for /proc).
	Proc string
	// Volume is a path on the file system whose space is measured (the
	// config's dockerVolume).
	Volume string

	mu sync.Mutex
	// busy and all are the CPU jiffies of the previous sample.
	busy, all uint64
	sampled   bool
}

// HostSample is one reading of the host.
type HostSample struct {
	// CPUPercent is the share of CPU time not idle (nor waiting for I/O)
	// since the previous sample, or since boot for the first one.
	CPUPercent float64
	// CPURead says CPUPercent was read.
	CPURead bool
	// Memory in bytes; MemFree is what the kernel reports available.
	MemTotal, MemFree, MemUsed uint64
	// Disk of the file system holding Volume, in bytes; DiskFree is what
	// an unprivileged process may use.
	DiskTotal, DiskFree, DiskUsed uint64
	// Uptime is the host's.
	Uptime time.Duration
}

func (h *Host) proc(name string) string {
	root := h.Proc
	if root == "" {
		root = "/proc"
	}
	return filepath.Join(root, name)
}

// Sample reads the host now. A part that cannot be read is an error; the
// parts that could be read are still returned.
func (h *Host) Sample() (HostSample, error) {
	var s HostSample
	var errs []error
	if busy, all, err := h.cpu(); err != nil {
		errs = append(errs, err)
	} else {
		h.mu.Lock()
		db, da := busy, all
		if h.sampled && all > h.all {
			db, da = busy-h.busy, all-h.all
		}
		h.busy, h.all, h.sampled = busy, all, true
		h.mu.Unlock()
		if da > 0 {
			s.CPUPercent, s.CPURead = float64(db)/float64(da)*100, true
		}
	}
	if total, free, err := h.memory(); err != nil {
		errs = append(errs, err)
	} else {
		s.MemTotal, s.MemFree, s.MemUsed = total, free, total-min(free, total)
	}
	if h.Volume != "" {
		var st syscall.Statfs_t
		if err := syscall.Statfs(h.Volume, &st); err != nil {
			errs = append(errs, fmt.Errorf("statfs %s: %w", h.Volume, err))
		} else {
			bs := uint64(st.Bsize)
			s.DiskTotal, s.DiskFree = st.Blocks*bs, st.Bavail*bs
			s.DiskUsed = (st.Blocks - st.Bfree) * bs
		}
	}
	if up, err := h.uptime(); err != nil {
		errs = append(errs, err)
	} else {
		s.Uptime = up
	}
	return s, errors.Join(errs...)
}

// cpu returns the busy and total jiffies of all CPUs since boot (the
// "cpu" line of /proc/stat; idle and iowait are not busy).
func (h *Host) cpu() (busy, all uint64, err error) {
	b, err := os.ReadFile(h.proc("stat"))
	if err != nil {
		return 0, 0, fmt.Errorf("cpu: %w", err)
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("cpu: unexpected first line of %s: %q", h.proc("stat"), line)
	}
	// user nice system idle iowait irq softirq steal (guest time is
	// already in user and nice).
	for i, v := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("cpu: field %d of %s: %w", i+1, h.proc("stat"), err)
		}
		all += n
		if i != 3 && i != 4 {
			busy += n
		}
	}
	return busy, all, nil
}

// memory returns MemTotal and MemAvailable (MemFree on kernels without
// it) in bytes.
func (h *Host) memory() (total, free uint64, err error) {
	f, err := os.Open(h.proc("meminfo"))
	if err != nil {
		return 0, 0, fmt.Errorf("memory: %w", err)
	}
	defer f.Close()
	vals := map[string]uint64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) == 0 {
			continue
		}
		n, err := strconv.ParseUint(fs[0], 10, 64)
		if err != nil {
			continue
		}
		if len(fs) > 1 && fs[1] == "kB" {
			n *= 1024
		}
		vals[k] = n
	}
	if err := sc.Err(); err != nil {
		return 0, 0, fmt.Errorf("memory: %w", err)
	}
	total, ok := vals["MemTotal"]
	if !ok {
		return 0, 0, fmt.Errorf("memory: no MemTotal in %s", h.proc("meminfo"))
	}
	free, ok = vals["MemAvailable"]
	if !ok {
		free = vals["MemFree"]
	}
	return total, free, nil
}

// uptime reads the host's uptime.
func (h *Host) uptime() (time.Duration, error) {
	b, err := os.ReadFile(h.proc("uptime"))
	if err != nil {
		return 0, fmt.Errorf("uptime: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, fmt.Errorf("uptime: empty %s", h.proc("uptime"))
	}
	secs, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0, fmt.Errorf("uptime: %w", err)
	}
	return time.Duration(secs * float64(time.Second)), nil
}

// Uptime is the host's uptime (see /proc/uptime).
func (h *Host) Uptime() (time.Duration, error) { return h.uptime() }

// HostPoint writes a host point from s; the parts that could not be read
// (a zero total, no CPU reading) are left out.
func HostPoint(a Adder, s HostSample, at time.Time) {
	f := map[string]any{}
	if s.CPURead {
		f["cpuPercent"] = s.CPUPercent
	}
	if s.MemTotal > 0 {
		f["memTotal"], f["memFree"], f["memUsed"] = int64(s.MemTotal), int64(s.MemFree), int64(s.MemUsed)
	}
	if s.DiskTotal > 0 {
		f["diskTotal"], f["diskFree"], f["diskUsed"] = int64(s.DiskTotal), int64(s.DiskFree), int64(s.DiskUsed)
	}
	if s.Uptime > 0 {
		f["uptimeSeconds"] = s.Uptime.Seconds()
	}
	if len(f) == 0 {
		return
	}
	a.Add(MeasurementHost, nil, f, at)
}
