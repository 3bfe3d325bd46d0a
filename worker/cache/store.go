package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Names of the manager's own entries in a cache's directory.
const (
	metaSuffix  = ".json"
	tmpSuffix   = ".tmp"
	trashPrefix = ".removing-"
)

// meta is an instance's state file.
type meta struct {
	Created  time.Time `json:"created"`
	LastUsed time.Time `json:"lastUsed"`
	Purge    bool      `json:"purge,omitempty"`
	Holder   *Holder   `json:"holder,omitempty"`
}

func (m *Manager) metaPath(i *instance) string { return m.path(i.name, i.id) + metaSuffix }

// writeMeta replaces i's state file (write, sync, rename), so that it is
// either the old or the new state after a crash. Called with m.mu.
func (m *Manager) writeMeta(i *instance) error {
	b, err := json.Marshal(meta{Created: i.created, LastUsed: i.lastUsed, Purge: i.purge, Holder: i.holder})
	if err != nil {
		return err
	}
	final := m.metaPath(i)
	tmp := filepath.Join(filepath.Dir(final), "."+filepath.Base(final)+tmpSuffix)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("write cache state: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write cache state of %s: %w", i.key(), err)
	}
	return nil
}

// Load finds the instances on disk, once; later calls do nothing. Left-over
// removals and temporary files are deleted; a state file without its
// directory is dropped; a directory without a state file (docker-worker
// kept no state) is taken as a free instance last used when it was last
// modified. Instances a previous process held are then checked (see
// [Manager.Settle]; removals that fail are logged and retried by the next
// Settle). Only an unreadable cache root is an error; a missing one is
// empty.
func (m *Manager) Load(ctx context.Context) error {
	m.loadMu.Lock()
	defer m.loadMu.Unlock()
	if m.loaded {
		return nil
	}
	names, err := os.ReadDir(m.cfg.Dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read cache directory: %w", err)
	}
	found := map[string]*instance{}
	for _, e := range names {
		if !e.IsDir() || ValidName(e.Name()) != nil {
			continue
		}
		for _, i := range m.loadName(e.Name()) {
			found[i.key()] = i
		}
	}
	m.mu.Lock()
	for k, i := range found {
		if _, ok := m.insts[k]; !ok {
			m.insts[k] = i
		}
	}
	m.mu.Unlock()
	m.loaded = true
	m.log.Info("cache volumes loaded", "dir", m.cfg.Dir, "instances", len(found))
	if err := m.Settle(ctx); err != nil {
		m.log.Warn("cache volume removal failed", "error", err)
	}
	return nil
}

// loadName reads the instances of one cache.
func (m *Manager) loadName(name string) []*instance {
	dir := filepath.Join(m.cfg.Dir, name)
	entries, err := os.ReadDir(dir)
	if err != nil {
		m.log.Warn("cannot read cache", "cache", name, "error", err)
		return nil
	}
	dirs := map[string]os.DirEntry{}
	metas := map[string]bool{}
	for _, e := range entries {
		n := e.Name()
		switch {
		case strings.HasPrefix(n, trashPrefix) || strings.HasSuffix(n, tmpSuffix):
			if err := os.RemoveAll(filepath.Join(dir, n)); err != nil {
				m.log.Warn("cannot delete left-over cache file", "path", filepath.Join(dir, n), "error", err)
			}
		case strings.HasPrefix(n, "."):
		case e.IsDir():
			dirs[n] = e
		case strings.HasSuffix(n, metaSuffix):
			metas[strings.TrimSuffix(n, metaSuffix)] = true
		}
	}
	var out []*instance
	for id := range metas {
		i := &instance{name: name, id: id}
		if _, ok := dirs[id]; !ok {
			m.log.Warn("cache state without its directory dropped", "cache", name, "key", i.key())
			os.Remove(m.metaPath(i))
			continue
		}
		b, err := os.ReadFile(m.metaPath(i))
		var md meta
		if err == nil {
			err = json.Unmarshal(b, &md)
		}
		if err != nil {
			m.log.Warn("unreadable cache state: instance left alone", "cache", name, "key", i.key(), "error", err)
			delete(dirs, id)
			continue
		}
		i.created, i.lastUsed, i.purge, i.holder = md.Created, md.LastUsed, md.Purge, md.Holder
		out = append(out, i)
		delete(dirs, id)
	}
	for id, e := range dirs {
		i := &instance{name: name, id: id}
		info, err := e.Info()
		if err != nil {
			continue
		}
		i.created, i.lastUsed = info.ModTime(), info.ModTime()
		if err := m.writeMeta(i); err != nil {
			m.log.Warn("cache instance without state left alone", "cache", name, "key", i.key(), "error", err)
			continue
		}
		m.log.Info("cache instance without state adopted", "cache", name, "key", i.key())
		out = append(out, i)
	}
	return out
}

// Settle checks the instances a previous worker process left held: each
// whose run has no container any more (see [Config.Alive]) is released,
// and deleted when it is marked for removal. It also retries deleting
// marked instances whose removal failed. Errors are those of the removals;
// a failed check is logged and the instance stays held.
func (m *Manager) Settle(ctx context.Context) error {
	m.settleStale(ctx, "")
	m.mu.Lock()
	var todo []*instance
	for _, i := range m.sorted() {
		if i.purge && m.claimRemoval(i) {
			todo = append(todo, i)
		}
	}
	m.mu.Unlock()
	var errs []error
	for _, i := range todo {
		_, err := m.remove(ctx, i, false, "marked for removal")
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// hasStale reports whether an instance of name ("": any) is held by a
// previous process.
func (m *Manager) hasStale(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, i := range m.insts {
		if (name == "" || i.name == name) && i.holder != nil && i.lease == nil && !i.removing {
			return true
		}
	}
	return false
}

// settleStale releases the instances of name ("": all) whose stale holder's
// container is gone.
func (m *Manager) settleStale(ctx context.Context, name string) {
	m.settleMu.Lock()
	defer m.settleMu.Unlock()
	m.mu.Lock()
	type check struct {
		i *instance
		h Holder
	}
	var checks []check
	for _, i := range m.sorted() {
		if (name == "" || i.name == name) && i.holder != nil && i.lease == nil && !i.removing {
			checks = append(checks, check{i, *i.holder})
		}
	}
	m.mu.Unlock()
	for _, c := range checks {
		alive := false
		if m.cfg.Alive != nil {
			var err error
			if alive, err = m.cfg.Alive(ctx, c.h); err != nil {
				m.log.Warn("cannot tell whether a cache's previous holder is gone: instance stays held",
					"cache", c.i.name, "key", c.i.key(), "taskId", c.h.TaskID, "runId", c.h.RunID, "error", err)
				continue
			}
		}
		if alive {
			m.log.Info("cache volume still held by a container of a previous worker process",
				"cache", c.i.name, "key", c.i.key(), "taskId", c.h.TaskID, "runId", c.h.RunID, "workerId", c.h.WorkerID)
			continue
		}
		m.mu.Lock()
		if c.i.lease == nil && c.i.holder != nil && !c.i.removing {
			c.i.holder, c.i.lastUsed = nil, m.cfg.Now()
			if err := m.writeMeta(c.i); err != nil {
				m.log.Warn("cannot write cache state", "key", c.i.key(), "error", err)
			}
			m.log.Info("cache volume release", "cache", c.i.name, "key", c.i.key(), "path", m.path(c.i.name, c.i.id),
				"taskId", c.h.TaskID, "runId", c.h.RunID, "reason", "the previous worker process's container is gone")
		}
		m.mu.Unlock()
	}
}
