// Package cache manages the host directories behind payload volume caches
// (payload.cache): named caches, each with any number of instances, one
// directory each, bind-mounted read-write into task containers.
//
// An instance is used by one task at a time. [Manager.Acquire] hands out the
// free instance of a name that was released most recently, or creates a new
// one; [Lease.Release] gives it back. Instances can be marked for removal
// (a purge request naming the cache, or the task's exit status); a marked
// instance is never handed out again and is deleted as soon as no task
// holds it.
//
// # Layout on disk
//
//	<dir>/<name>/<instance>/       the directory mounted into containers
//	<dir>/<name>/<instance>.json   the instance's state (kept outside the
//	                               mounted directory, so tasks cannot touch it)
//
// The state (created, last used, marked, and which run holds it) is written
// at every change, so a new worker process finds the instances again
// ([Manager.Load]). An instance a previous process held when it stopped is
// not handed out until the container of that run is known to be gone: the
// check is injected ([Config.Alive]); the worker asks Docker whether a
// container carrying the run's labels still runs.
//
// One directory belongs to one worker process at a time. The package is a
// leaf of the worker: it knows nothing about tasks beyond [Holder], and it
// is safe for concurrent use.
package cache

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Holder names the run using an instance, as the worker labels its task
// containers.
type Holder struct {
	TaskID   string `json:"taskId"`
	RunID    int    `json:"runId"`
	WorkerID string `json:"workerId"`
}

// AliveFunc reports whether a container of the run h may still use the
// instance (the worker asks Docker whether one runs).
type AliveFunc func(ctx context.Context, h Holder) (bool, error)

// Config configures a [Manager].
type Config struct {
	// Dir is the cache root (config cache.volumeCachePath). It is created
	// when the first instance is.
	Dir string
	// Alive is asked about the holders of instances a previous worker
	// process left held; such an instance is released once Alive says
	// false. nil: such instances are released at once.
	Alive AliveFunc
	// Logger receives "cache volume hit|miss|release|purge|removed"
	// records; nil discards them.
	Logger *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Info describes one instance.
type Info struct {
	Name string
	ID   string
	// Path is the directory mounted into containers.
	Path     string
	Created  time.Time
	LastUsed time.Time
	// Holder is the run holding the instance (nil when free). A holder
	// left by a previous worker process is Stale until its container is
	// known to be gone.
	Holder *Holder
	Stale  bool
	// Purge says the instance is marked for removal.
	Purge bool
}

// Key is docker-worker's name for the instance, "<name>::<id>".
func (i Info) Key() string { return i.Name + "::" + i.ID }

// Manager is the set of cache instances under one directory. Create it
// with [New]; it touches the disk only when it is used.
type Manager struct {
	cfg Config
	log *slog.Logger

	// loadMu serialises Load, so that the first Acquire cannot race it.
	loadMu sync.Mutex
	loaded bool

	// settleMu serialises the checks of stale holders.
	settleMu sync.Mutex

	mu    sync.Mutex
	insts map[string]*instance // by Key
}

type instance struct {
	name, id string
	created  time.Time
	lastUsed time.Time
	purge    bool
	holder   *Holder
	// lease is set while a run of this process holds the instance; a
	// holder without a lease is stale (left by a previous process).
	lease *Lease
	// removing is set once the instance is being deleted.
	removing bool
}

func (i *instance) key() string { return i.name + "::" + i.id }

// free reports whether nobody holds the instance.
func (i *instance) free() bool { return i.holder == nil && !i.removing }

// New returns a manager for cfg. It does not touch the disk.
func New(cfg Config) *Manager {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{cfg: cfg, log: log, insts: map[string]*instance{}}
}

// Dir is the cache root.
func (m *Manager) Dir() string { return m.cfg.Dir }

func (m *Manager) path(name, id string) string { return filepath.Join(m.cfg.Dir, name, id) }

func (m *Manager) info(i *instance) Info {
	inf := Info{Name: i.name, ID: i.id, Path: m.path(i.name, i.id), Created: i.created, LastUsed: i.lastUsed, Purge: i.purge}
	if i.holder != nil {
		h := *i.holder
		inf.Holder, inf.Stale = &h, i.lease == nil
	}
	return inf
}

// Lease is one run's exclusive use of an instance, from [Manager.Acquire]
// to [Lease.Release].
type Lease struct {
	m    *Manager
	inst *instance
	// Name, ID and Path describe the instance; Path is the directory to
	// mount.
	Name, ID, Path string
	// Hit says an existing instance was reused.
	Hit bool

	released bool // under m.mu
}

// Key is docker-worker's name for the instance, "<name>::<id>".
func (l *Lease) Key() string { return l.Name + "::" + l.ID }

// Acquire gives the run h exclusive use of an instance of the cache name:
// the free, unmarked instance released most recently ("cache volume hit"),
// else a new one ("cache volume miss"). An invalid name is refused (see
// [ValidName]) before anything is created. It loads the state on disk
// first if [Manager.Load] has not run.
func (m *Manager) Acquire(ctx context.Context, name string, h Holder) (*Lease, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	if err := m.Load(ctx); err != nil {
		return nil, err
	}
	if m.hasStale(name) {
		m.settleStale(ctx, name)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var best *instance
	for _, i := range m.insts {
		if i.name == name && i.free() && !i.purge && (best == nil || i.lastUsed.After(best.lastUsed)) {
			best = i
		}
	}
	if best != nil {
		holder := h
		best.holder = &holder
		if err := m.writeMeta(best); err != nil {
			best.holder = nil
			return nil, err
		}
		l := m.lease(best, true)
		m.log.Info("cache volume hit", "cache", name, "key", l.Key(), "path", l.Path, "taskId", h.TaskID, "runId", h.RunID)
		return l, nil
	}
	i, err := m.create(name, h)
	if err != nil {
		return nil, err
	}
	l := m.lease(i, false)
	m.log.Info("cache volume miss", "cache", name, "key", l.Key(), "path", l.Path, "taskId", h.TaskID, "runId", h.RunID)
	return l, nil
}

func (m *Manager) lease(i *instance, hit bool) *Lease {
	l := &Lease{m: m, inst: i, Name: i.name, ID: i.id, Path: m.path(i.name, i.id), Hit: hit}
	i.lease = l
	return l
}

// create makes a new instance held by h: its state first, then its
// directory, so that a directory never lacks its state. Called with m.mu.
func (m *Manager) create(name string, h Holder) (*instance, error) {
	if err := os.MkdirAll(filepath.Join(m.cfg.Dir, name), 0o755); err != nil {
		return nil, fmt.Errorf("create cache directory: %w", err)
	}
	now := m.cfg.Now()
	holder := h
	i := &instance{name: name, id: newID(), created: now, lastUsed: now, holder: &holder}
	if err := m.writeMeta(i); err != nil {
		return nil, err
	}
	if err := os.Mkdir(m.path(name, i.id), 0o777); err != nil {
		os.Remove(m.metaPath(i))
		return nil, fmt.Errorf("create cache instance: %w", err)
	}
	m.insts[i.key()] = i
	return i, nil
}

// newID returns a random (version 4) UUID, docker-worker's instance IDs.
func newID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Release ends the lease ("cache volume release"): the instance is free
// again, most recently used, or deleted when it is marked for removal.
// Calling it again does nothing.
func (l *Lease) Release(ctx context.Context) error {
	m := l.m
	m.mu.Lock()
	if l.released {
		m.mu.Unlock()
		return nil
	}
	l.released = true
	i := l.inst
	h := i.holder
	i.holder, i.lease, i.lastUsed = nil, nil, m.cfg.Now()
	err := m.writeMeta(i)
	attrs := []any{"cache", i.name, "key", i.key(), "path", l.Path}
	if h != nil {
		attrs = append(attrs, "taskId", h.TaskID, "runId", h.RunID)
	}
	m.log.Info("cache volume release", attrs...)
	remove := i.purge && m.claimRemoval(i)
	m.mu.Unlock()
	if remove {
		_, rerr := m.remove(ctx, i, false, "marked for removal")
		err = errors.Join(err, rerr)
	}
	return err
}

// Purge marks the leased instance for removal ("cache volume purge"): it
// is deleted when the lease is released. After Release it does nothing.
func (l *Lease) Purge(reason string) error {
	m := l.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if l.released {
		return nil
	}
	return m.mark(l.inst, reason)
}

// mark marks i for removal. Called with m.mu.
func (m *Manager) mark(i *instance, reason string) error {
	if i.purge {
		return nil
	}
	i.purge = true
	m.log.Info("cache volume purge", "cache", i.name, "key", i.key(), "reason", reason)
	return m.writeMeta(i)
}

// PurgeBefore marks every instance of the cache name created before
// before for removal, as a purge request asks, and deletes those nobody
// holds. It returns how many instances it marked.
func (m *Manager) PurgeBefore(ctx context.Context, name string, before time.Time) (int, error) {
	m.mu.Lock()
	var errs []error
	var now []*instance
	n := 0
	for _, i := range m.sorted() {
		if i.name != name || !i.created.Before(before) || i.purge || i.removing {
			continue
		}
		n++
		errs = append(errs, m.mark(i, "purge request before "+before.UTC().Format(time.RFC3339)))
		if m.claimRemoval(i) {
			now = append(now, i)
		}
	}
	m.mu.Unlock()
	for _, i := range now {
		_, err := m.remove(ctx, i, false, "marked for removal")
		errs = append(errs, err)
	}
	return n, errors.Join(errs...)
}

// claimRemoval reserves a free instance for deletion. Called with m.mu.
func (m *Manager) claimRemoval(i *instance) bool {
	if !i.free() {
		return false
	}
	i.removing = true
	return true
}

// sorted returns the instances by name, then creation. Called with m.mu.
func (m *Manager) sorted() []*instance {
	out := make([]*instance, 0, len(m.insts))
	for _, i := range m.insts {
		out = append(out, i)
	}
	slices.SortFunc(out, func(a, b *instance) int {
		return cmp.Or(strings.Compare(a.name, b.name), a.created.Compare(b.created), strings.Compare(a.id, b.id))
	})
	return out
}

// Instances lists every instance, by name and creation.
func (m *Manager) Instances() []Info {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Info
	for _, i := range m.sorted() {
		if !i.removing {
			out = append(out, m.info(i))
		}
	}
	return out
}

// RemoveUnused deletes instances nobody holds, least recently used first,
// until at least want bytes are freed (want <= 0: all of them), as the
// disk garbage collector needs. It returns the bytes freed (the space the
// deleted files took on disk). Instances held by a run, or by a run of a
// previous process whose container may still exist, are never deleted.
func (m *Manager) RemoveUnused(ctx context.Context, want int64) (int64, error) {
	m.mu.Lock()
	var cands []*instance
	for _, i := range m.insts {
		if i.free() {
			cands = append(cands, i)
		}
	}
	m.mu.Unlock()
	slices.SortFunc(cands, func(a, b *instance) int {
		return cmp.Or(a.lastUsed.Compare(b.lastUsed), strings.Compare(a.key(), b.key()))
	})
	var freed int64
	var errs []error
	for _, i := range cands {
		if want > 0 && freed >= want {
			break
		}
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		m.mu.Lock()
		ok := m.claimRemoval(i) // it may have been acquired meanwhile
		m.mu.Unlock()
		if !ok {
			continue
		}
		n, err := m.remove(ctx, i, true, "disk space")
		freed += n
		errs = append(errs, err)
	}
	return freed, errors.Join(errs...)
}

// ErrInUse is returned by [Manager.Remove] for an instance a run holds.
var ErrInUse = errors.New("cache instance in use")

// Remove deletes the instance id of the cache name unless a run holds it
// (then the error matches [ErrInUse]), and returns the space it took on
// disk. An instance that no longer exists is not an error. It is the disk
// garbage collector's removal of one instance.
func (m *Manager) Remove(ctx context.Context, name, id string) (int64, error) {
	m.mu.Lock()
	i, ok := m.insts[name+"::"+id]
	if !ok {
		m.mu.Unlock()
		return 0, nil
	}
	if !m.claimRemoval(i) {
		m.mu.Unlock()
		return 0, fmt.Errorf("remove cache instance %s: %w", i.key(), ErrInUse)
	}
	m.mu.Unlock()
	return m.remove(ctx, i, true, "disk space")
}

// remove deletes an instance reserved with claimRemoval ("cache volume
// removed"): its directory is first renamed out of the way, then its state
// is deleted, then the renamed directory; a crash in between leaves
// nothing that Load would take for an instance. With measure it returns
// the space the instance took.
func (m *Manager) remove(ctx context.Context, i *instance, measure bool, reason string) (int64, error) {
	dir := m.path(i.name, i.id)
	var size int64
	if measure {
		size = diskUsage(ctx, dir)
	}
	trash := filepath.Join(m.cfg.Dir, i.name, trashPrefix+i.id)
	if err := os.Rename(dir, trash); err != nil && !errors.Is(err, os.ErrNotExist) {
		m.mu.Lock()
		i.removing = false
		m.mu.Unlock()
		return 0, fmt.Errorf("remove cache instance %s: %w", i.key(), err)
	}
	m.mu.Lock()
	delete(m.insts, i.key())
	err := os.Remove(m.metaPath(i))
	m.mu.Unlock()
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	if rerr := os.RemoveAll(trash); rerr != nil {
		err = errors.Join(err, fmt.Errorf("remove cache instance %s: %w", i.key(), rerr))
	}
	m.log.Info("cache volume removed", "cache", i.name, "key", i.key(), "path", dir, "reason", reason)
	return size, err
}
