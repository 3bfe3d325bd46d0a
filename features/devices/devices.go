// Package devices is the always-on built-in feature serving
// payload.capabilities.devices and restrictCPU, over the device managers
// of worker/devices.
//
// A device the payload sets to true needs scope
// docker-worker:capability:device:<name> or its per-pool form
// docker-worker:capability:device:<name>:<provisionerId>/<workerType>; as in
// docker-worker the task's scopes are expanded through its roles
// (auth.expandScopes) when they do not grant every device as they are, so
// the check runs in Prepare. A missing scope fails the run with
// docker-worker's message. A device set to false is not allocated and needs
// no scope (docker-worker allocated a device for every key given).
//
// The feature owns capabilities.devices.<name> for each manager that is on,
// so a payload asking for a device the worker does not have (a manager
// switched off, or whose nodes are absent) is refused as malformed-payload
// naming the device. With restrictCPU every task gets one CPU of its own.
//
// As a worker extension it logs once why each manager is off, and before
// each claim it limits the claim to the free units of the exclusive
// managers (video, audio, CPUs), counting every run in progress as holding
// one of each; it logs "[info] host capacity adjusted" when that limit
// starts to lower a claim or changes while it does.
package devices

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/features/internal/scopecheck"
	"go.dockerworker.dev/docker-worker/worker/devices"
	"go.dockerworker.dev/docker-worker/worker/taskerr"
)

// Name is the feature's name in worker logs.
const Name = "devices"

// ScopePrefix starts the scope a device needs: ScopePrefix + <name>, or
// with ":<provisionerId>/<workerType>" appended.
const ScopePrefix = "docker-worker:capability:device:"

// insufficientScopes is docker-worker's first line when a device scope is
// missing.
const insufficientScopes = "Insufficient scopes to attach devices to task container."

// ScopeExpander expands scopes through the roles they assume
// (auth.expandScopes).
type ScopeExpander interface {
	ExpandScopes(ctx context.Context, scopes []string) ([]string, error)
}

// Config is what the feature is built with.
type Config struct {
	// Devices are the worker's device managers (nil: none).
	Devices *devices.Set
	// Expander expands the task's scopes when they do not grant every
	// device as they are; nil checks them as they are.
	Expander ScopeExpander
	// Logger is the worker log; nil discards.
	Logger *slog.Logger
}

// Feature serves payload.capabilities.devices.
type Feature struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	lastLimit int // the device limit last logged (-1: claims were not limited)
}

var (
	_ features.Feature   = (*Feature)(nil)
	_ features.AlwaysOn  = (*Feature)(nil)
	_ features.Owner     = (*Feature)(nil)
	_ features.Extension = (*Feature)(nil)
)

// New returns the feature. It has no side effects.
func New(cfg Config) *Feature {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Feature{cfg: cfg, log: log, lastLimit: -1}
}

// Name implements features.Feature.
func (f *Feature) Name() string { return Name }

// AlwaysOn implements features.AlwaysOn.
func (f *Feature) AlwaysOn() bool { return true }

// Owns implements features.Owner: the devices whose manager is on.
func (f *Feature) Owns() []string {
	var out []string
	for _, m := range f.cfg.Devices.Managers() {
		if m.Off() == "" && m.Name() != devices.CPU {
			out = append(out, "capabilities.devices."+m.Name())
		}
	}
	return out
}

// exclusive are the managers that are on and hand a unit to one task at
// a time.
func (f *Feature) exclusive() []*devices.Manager {
	var out []*devices.Manager
	for _, m := range f.cfg.Devices.Managers() {
		if m.Off() == "" && m.Exclusive() {
			out = append(out, m)
		}
	}
	return out
}

// Init implements features.Extension.
func (f *Feature) Init(_ context.Context, h features.Host) error {
	for _, m := range f.cfg.Devices.Managers() {
		if m.Off() != "" {
			f.log.Info("device manager off", "device", m.Name(), "reason", m.Off())
		} else {
			f.log.Info("device manager on", "device", m.Name(), "devices", m.Total())
		}
	}
	if len(f.exclusive()) == 0 {
		return nil
	}
	h.BeforeClaim(func(_ context.Context, want int) (int, string) {
		return f.allow(want, len(h.Runs().List()))
	})
	return nil
}

// allow is the before-claim limit with running runs in progress.
func (f *Feature) allow(want, running int) (int, string) {
	limit := -1
	var why []string
	for _, m := range f.exclusive() {
		free := max(m.Total()-max(running, m.Held()), 0)
		if limit < 0 || free < limit {
			limit = free
		}
		if free < want {
			why = append(why, fmt.Sprintf("%d of %d %s devices free", free, m.Total(), m.Name()))
		}
	}
	limited := limit >= 0 && limit < want
	key := -1
	if limited {
		key = limit
	}
	f.mu.Lock()
	changed := key != f.lastLimit
	f.lastLimit = key
	f.mu.Unlock()
	if !limited {
		return want, ""
	}
	if changed {
		f.log.Info("[info] host capacity adjusted", "deviceCapacity", limit, "wanted", want, "runningTasks", running,
			"reason", strings.Join(why, ", "))
	}
	return limit, strings.Join(why, ", ")
}

// NewTask implements features.Feature.
func (f *Feature) NewTask(t features.Task) (features.TaskFeature, error) {
	return &task{f: f, t: t}, nil
}

type task struct {
	f *Feature
	t features.Task

	mu     sync.Mutex
	leases []*devices.Lease
}

var (
	_ features.Preparer = (*task)(nil)
	_ features.Cleaner  = (*task)(nil)
)

// requested are the devices the payload sets to true, sorted.
func (k *task) requested() []string {
	p := k.t.Payload()
	if p == nil || p.Capabilities == nil {
		return nil
	}
	var out []string
	for _, name := range slices.Sorted(maps.Keys(p.Capabilities.Devices)) {
		if p.Capabilities.Devices[name] {
			out = append(out, name)
		}
	}
	return out
}

// Prepare implements features.Preparer: it checks that every device asked
// for is served and granted, then allocates them (and a CPU with
// restrictCPU).
func (k *task) Prepare(ctx context.Context, _ *features.PrepareRequest, resp *features.PrepareResponse) error {
	names := k.requested()
	set := k.f.cfg.Devices
	var unserved []error
	for _, name := range names {
		m := set.Manager(name)
		switch {
		case m == nil || name == devices.CPU:
			unserved = append(unserved, fmt.Errorf("capabilities.devices.%s: device %q is not supported by this worker", name, name))
		case m.Off() != "":
			unserved = append(unserved, fmt.Errorf("capabilities.devices.%s: device %q is not available on this worker: %s", name, name, m.Off()))
		}
	}
	if err := errors.Join(unserved...); err != nil {
		return taskerr.MalformedPayload(err)
	}
	if err := k.checkScopes(ctx, names); err != nil {
		return err
	}
	holder := fmt.Sprintf("%s/%d", k.t.TaskID(), k.t.RunID())
	if cpu := set.Manager(devices.CPU); cpu != nil && cpu.Off() == "" {
		names = append(names, devices.CPU)
	}
	for _, name := range names {
		l, err := set.Manager(name).Acquire(holder)
		if err != nil {
			return taskerr.ResourceUnavailable(fmt.Errorf("device %s: %w", name, err))
		}
		k.mu.Lock()
		k.leases = append(k.leases, l)
		k.mu.Unlock()
		for _, n := range l.Nodes {
			resp.Devices = append(resp.Devices, features.Device{HostPath: n.HostPath, ContainerPath: n.ContainerPath, Permissions: "rwm"})
		}
		for _, b := range l.Binds {
			resp.Mounts = append(resp.Mounts, features.Mount{Source: b.Source, Target: b.Target})
		}
		if l.CPUs != "" {
			resp.CpusetCpus = l.CPUs
		}
		k.t.Logger().Debug("device allocated", "device", name, "unit", l.ID)
	}
	return nil
}

// checkScopes requires, for every device, the plain or the per-pool
// scope, in the task's scopes or in their expansion through roles.
func (k *task) checkScopes(ctx context.Context, names []string) error {
	return scopecheck.Check(ctx, k.f.cfg.Expander, k.t.Scopes(), scopecheck.Requirement{
		Prefix: ScopePrefix, Pool: k.t.Worker().Pool(), Names: names,
		Insufficient: insufficientScopes, What: "device", Field: "payload.capabilities.devices",
	})
}

// Cleanup implements features.Cleaner: every device is released.
// Idempotent.
func (k *task) Cleanup(context.Context) error {
	k.mu.Lock()
	leases := k.leases
	k.leases = nil
	k.mu.Unlock()
	for _, l := range leases {
		l.Release()
	}
	return nil
}
