package interactive

import (
	"errors"
	"io/fs"
	"os"
	"sync"
	"time"
)

// hold keeps the task container alive: while its file exists the
// container's entrypoint wrapper waits, after the task's command exited,
// instead of ending the container. The file exists until minTime after the
// container started, while any session is open, and until
// expirationAfterSession after the last session closed.
type hold struct {
	path  string
	after time.Duration
	now   func() time.Time

	mu        sync.Mutex
	minUntil  time.Time
	sessions  int
	lastClose time.Time
	timer     *time.Timer
	stopped   bool
	err       error // the last error creating or removing the file
}

func newHold(path string, after time.Duration) *hold {
	return &hold{path: path, after: after, now: time.Now}
}

// start holds the container for at least minTime from now.
func (h *hold) start(minTime time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.minUntil = h.now().Add(minTime)
	h.update()
}

// opened and closed count sessions.
func (h *hold) opened() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sessions++
	h.update()
}

func (h *hold) closed() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sessions--
	h.lastClose = h.now()
	h.update()
}

// stop releases the container for good.
func (h *hold) stop() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stopped = true
	if h.timer != nil {
		h.timer.Stop()
	}
	h.setFile(false)
	return h.err
}

// until is when the hold ends if nothing changes (zero: now, or while
// sessions are open, never).
func (h *hold) until() (time.Time, bool) {
	if h.sessions > 0 {
		return time.Time{}, true
	}
	end := h.minUntil
	if !h.lastClose.IsZero() {
		if t := h.lastClose.Add(h.after); t.After(end) {
			end = t
		}
	}
	return end, h.now().Before(end)
}

// update sets the file and the timer for the next change; h.mu is held.
func (h *hold) update() {
	if h.stopped {
		return
	}
	end, keep := h.until()
	h.setFile(keep)
	if h.timer != nil {
		h.timer.Stop()
		h.timer = nil
	}
	if keep && !end.IsZero() {
		h.timer = time.AfterFunc(end.Sub(h.now()), func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.update()
		})
	}
}

func (h *hold) setFile(keep bool) {
	var err error
	if keep {
		err = os.WriteFile(h.path, nil, 0o644)
	} else if err = os.Remove(h.path); errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	if err != nil {
		h.err = err
	}
}

// held reports whether the file exists now (for tests).
func (h *hold) held() bool {
	_, err := os.Stat(h.path)
	return err == nil
}
