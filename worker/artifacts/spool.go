package artifacts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sync"
)

// Spooled is an entry copied to a temporary file, ready to upload with a
// known length.
type Spooled struct {
	// Path is the temporary file; the caller removes it.
	Path string
	// Size is the length of the file (compressed when Gzip).
	Size int64
	// RawSize is the number of bytes read (uncompressed).
	RawSize int64
	// SHA256 is the hex sha256 of the uncompressed bytes.
	SHA256 string
	Gzip   bool
}

// Spool copies r into a new file in dir, gzip-compressing it when gz, and
// hashing what it reads. Memory use is a fixed buffer, whatever the size.
func Spool(dir string, r io.Reader, gz bool) (*Spooled, error) {
	return SpoolSized(dir, r, gz, -1)
}

// ParallelGzipMin is the size from which [SpoolSized] compresses in
// parallel (see [NewParallelGzip]); smaller inputs keep [Gzip]'s output.
const ParallelGzipMin = 16 << 20

// SpoolSized is [Spool] for an input of a known size (negative: unknown):
// at ParallelGzipMin or more, gzip runs on every core.
func SpoolSized(dir string, r io.Reader, gz bool, size int64) (*Spooled, error) {
	f, err := os.CreateTemp(dir, "artifact-*")
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	sp := &Spooled{Path: f.Name(), Gzip: gz}
	h := sha256.New()
	var dst io.Writer = f
	var zw io.WriteCloser
	switch {
	case gz && size >= ParallelGzipMin:
		zw = NewParallelGzip(f)
		dst = zw
	case gz:
		zw = NewGzip(f)
		dst = zw
	}
	sp.RawSize, err = io.Copy(io.MultiWriter(dst, h), r)
	if err == nil && zw != nil {
		err = zw.Close()
	}
	if err == nil {
		sp.Size, err = f.Seek(0, io.SeekCurrent)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return nil, fmt.Errorf("spool: %w", err)
	}
	sp.SHA256 = hex.EncodeToString(h.Sum(nil))
	return sp, nil
}

// Open opens the spooled file from its start.
func (s *Spooled) Open(context.Context) (io.ReadCloser, error) { return os.Open(s.Path) }

// Group runs uploads in parallel, at most n at a time. A slot is taken with
// Acquire (which waits) and handed to a goroutine with Go, or given back
// with Release. Taking the slot before preparing an upload (spooling it)
// bounds the temporary files too.
type Group struct {
	sem chan struct{}
	wg  sync.WaitGroup
}

// NewGroup returns a group of n slots (at least 1).
func NewGroup(n int) *Group {
	return &Group{sem: make(chan struct{}, max(n, 1))}
}

// Acquire waits for a free slot, or for ctx to end.
func (g *Group) Acquire(ctx context.Context) error {
	select {
	case g.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Release gives back a slot taken by Acquire that will not be used.
func (g *Group) Release() { <-g.sem }

// Go runs fn in a new goroutine that holds the slot taken by the last
// Acquire and gives it back when fn returns.
func (g *Group) Go(fn func()) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer g.Release()
		fn()
	}()
}

// Wait waits for every function started with Go.
func (g *Group) Wait() { g.wg.Wait() }
