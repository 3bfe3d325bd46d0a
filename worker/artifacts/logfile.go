package artifacts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
)

// LogFile is a task-log sink that gzips everything written to it into a
// temporary file (docker-worker's gzip bytes, see [Gzip]) and hashes the
// uncompressed bytes, ready to upload once the log is complete. The task
// log calls Write serially; the first failure sticks.
type LogFile struct {
	file *os.File
	gz   *Gzip
	h    hash.Hash
	err  error
	size int64 // compressed length, once finished
}

// NewLogFile creates the temporary file in dir ("" for the system default)
// from pattern (see os.CreateTemp).
func NewLogFile(dir, pattern string) (*LogFile, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, fmt.Errorf("create log file: %w", err)
	}
	return &LogFile{file: f, gz: NewGzip(f), h: sha256.New()}, nil
}

// Write compresses and hashes p.
func (l *LogFile) Write(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	if _, err := l.gz.Write(p); err != nil {
		l.err = fmt.Errorf("write log file: %w", err)
		return 0, l.err
	}
	l.h.Write(p)
	return len(p), nil
}

// Finish ends the gzip stream and returns the compressed length and the
// hex sha256 of the uncompressed log. It may be called more than once.
func (l *LogFile) Finish() (int64, string, error) {
	if l.err != nil {
		return 0, "", l.err
	}
	if l.size == 0 {
		if err := l.gz.Close(); err != nil {
			l.err = fmt.Errorf("finish log file: %w", err)
			return 0, "", l.err
		}
		st, err := l.file.Stat()
		if err != nil {
			l.err = fmt.Errorf("finish log file: %w", err)
			return 0, "", l.err
		}
		l.size = st.Size()
	}
	return l.size, hex.EncodeToString(l.h.Sum(nil)), nil
}

// Open reads the compressed file from its start (after Finish).
func (l *LogFile) Open(context.Context) (io.ReadCloser, error) { return os.Open(l.file.Name()) }

// Remove closes and deletes the file. It is idempotent.
func (l *LogFile) Remove() error {
	if l.file == nil {
		return nil
	}
	name := l.file.Name()
	err := l.file.Close()
	l.file = nil
	if errors.Is(err, os.ErrClosed) {
		err = nil
	}
	return errors.Join(err, os.Remove(name))
}
