// Package livelog streams a growing log to many HTTP readers at once: a
// [Stream] is an append-only log kept in a temporary file, and a [Server]
// serves each registered stream at /log/<token>. A reader gets everything
// written so far, then follows new output until the stream is closed.
//
// Writers never wait for readers: the data is on disk, and each reader
// reads it at its own pace, so a slow or stalled reader costs neither the
// writer nor the other readers anything, and memory does not grow with the
// log. The most recent bytes are also kept in memory (at most
// [TailBytes]), and readers that keep up take new output straight from
// there, the same bytes for all of them, without a copy or a file read. The package knows nothing about
// Taskcluster; features/localLiveLog puts it to use.
package livelog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// TailBytes is how much of the most recent output a [Stream] keeps in
// memory for its readers (up to twice as much just before it trims).
const TailBytes = 64 << 10

// Stream is an append-only log that many readers can follow. It is safe for
// concurrent use.
type Stream struct {
	mu   sync.Mutex
	f    *os.File
	size int64
	// tail holds the bytes from tailStart to size. Bytes in it are never
	// changed: appends go past every slice handed out, and trimming moves
	// the rest to a new array, so readers may use a slice of it after
	// unlocking.
	tail      []byte
	tailStart int64
	closed    bool // no more writes: readers end at size
	removed   bool // the file is unlinked; f closes when the last reader leaves
	readers   int
	waiting   bool          // a reader waits on changed
	changed   chan struct{} // closed (and replaced) when size or closed changes
}

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("livelog: stream closed")

// NewStream creates an empty stream backed by a new file in dir ("" for
// the system temporary directory).
func NewStream(dir string) (*Stream, error) {
	f, err := os.CreateTemp(dir, "livelog-*")
	if err != nil {
		return nil, fmt.Errorf("livelog: %w", err)
	}
	return &Stream{f: f, changed: make(chan struct{})}, nil
}

// notify wakes waiting readers; s.mu is held.
func (s *Stream) notify() {
	if s.waiting {
		close(s.changed)
		s.changed = make(chan struct{})
		s.waiting = false
	}
}

// Write appends p. It never waits for readers.
func (s *Stream) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	n, err := s.f.WriteAt(p, s.size)
	if n > 0 {
		s.appendTail(p[:n])
		s.size += int64(n)
		s.notify()
	}
	if err != nil {
		return n, fmt.Errorf("livelog: %w", err)
	}
	return n, nil
}

// appendTail adds p to the in-memory tail, moving the last TailBytes to a
// new array when it holds twice that; s.mu is held.
func (s *Stream) appendTail(p []byte) {
	if len(s.tail)+len(p) > 2*TailBytes {
		keep := min(len(s.tail), max(TailBytes-len(p), 0))
		fresh := make([]byte, keep, max(2*TailBytes, keep+len(p)))
		copy(fresh, s.tail[len(s.tail)-keep:])
		s.tailStart += int64(len(s.tail) - keep)
		s.tail = fresh
	}
	s.tail = append(s.tail, p...)
}

// Close ends the stream: readers get what was written and then EOF. It is
// idempotent.
func (s *Stream) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		s.notify()
	}
	return nil
}

// Remove closes the stream and deletes its file. Readers already following
// it read to the end; the file handle is released when the last one leaves.
// It is idempotent.
func (s *Stream) Remove() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		s.notify()
	}
	if s.removed {
		return nil
	}
	s.removed = true
	err := os.Remove(s.f.Name())
	if s.readers == 0 {
		err = errors.Join(err, s.f.Close())
	}
	return err
}

// Size returns how many bytes were written.
func (s *Stream) Size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size
}

// errRemoved is returned by Follow on a stream that was already removed.
var errRemoved = errors.New("livelog: stream removed")

// Follow copies the stream to w from offset from: everything written so far,
// then new writes as they come, until the stream is closed and fully
// copied (nil), ctx ends, or w fails. flush, when not nil, is called
// whenever Follow has caught up and is about to wait.
func (s *Stream) Follow(ctx context.Context, w io.Writer, from int64, flush func() error) error {
	s.mu.Lock()
	if s.removed {
		s.mu.Unlock()
		return errRemoved
	}
	s.readers++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.readers--
		if s.removed && s.readers == 0 {
			s.f.Close()
		}
	}()

	var buf []byte // for reads from the file, allocated when first needed
	off := from
	for {
		s.mu.Lock()
		size, closed := s.size, s.closed
		var wait chan struct{}
		if off >= size && !closed {
			s.waiting = true
			wait = s.changed
		}
		var recent []byte
		if off < size && off >= s.tailStart {
			recent = s.tail[off-s.tailStart : size-s.tailStart]
		}
		s.mu.Unlock()

		if len(recent) > 0 {
			if _, err := w.Write(recent); err != nil {
				return err
			}
			off += int64(len(recent))
			continue
		}
		if off < size {
			if buf == nil {
				buf = make([]byte, 32<<10)
			}
			n, err := s.f.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return werr
				}
				off += int64(n)
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("livelog: read: %w", err)
			}
			continue
		}
		if closed {
			if flush != nil {
				return flush()
			}
			return nil
		}
		if flush != nil {
			if err := flush(); err != nil {
				return err
			}
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
