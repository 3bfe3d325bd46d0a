package artifacts

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"runtime"
	"time"

	"github.com/klauspost/pgzip"
)

// parallelBlock is the size of the blocks NewParallelGzip compresses
// independently.
const parallelBlock = 1 << 20

// NewParallelGzip returns a gzip writer into w that compresses blocks of
// the input on every core at once (github.com/klauspost/pgzip) for large
// inputs: the stream is valid gzip with the same header as [Gzip]'s (no
// name, mtime 0, OS 3), but its bytes differ from zlib's. Close flushes it
// (and does not close w). Memory use is bounded by a few blocks per core.
func NewParallelGzip(w io.Writer) io.WriteCloser {
	zw := pgzip.NewWriter(w)
	zw.OS = GzipOSUnix
	zw.ModTime = time.Unix(0, 0) // its zero Time would be written as a garbage mtime
	// The block size and count are valid: no error.
	_ = zw.SetConcurrency(parallelBlock, 2*runtime.GOMAXPROCS(0))
	return zw
}

// GzipOSUnix is the gzip header OS byte docker-worker's artifacts carry
// (Node's zlib writes 3, Unix; Go writes 255 unless told).
const GzipOSUnix = 3

// smallInput is the size up to which Gzip buffers its input to choose the
// shorter of two encodings (see NewGzip).
const smallInput = 4 << 10

// Gzip is a gzip writer whose output for small inputs matches what Node's
// zlib (and so docker-worker) wrote. Go's compress/flate always ends a
// stream with an empty stored block, so even "xfoo\n" differs from zlib's
// single final fixed-Huffman block. Gzip buffers inputs up to 4 KiB and on
// Close writes whichever is shorter: one final fixed-Huffman block of
// literals (zlib's choice for short inputs without repeats, byte for byte)
// or compress/flate's output. Larger inputs stream through compress/gzip.
// Either way the header is zlib's: no name, mtime 0, XFL 0, OS 3.
type Gzip struct {
	w   io.Writer
	buf []byte
	zw  *gzip.Writer // set once the input outgrew smallInput
	err error
}

// NewGzip returns a writer compressing into w; Close flushes it (and does
// not close w).
func NewGzip(w io.Writer) *Gzip { return &Gzip{w: w} }

// Write implements io.Writer.
func (g *Gzip) Write(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	if g.zw == nil && len(g.buf)+len(p) <= smallInput {
		g.buf = append(g.buf, p...)
		return len(p), nil
	}
	if g.zw == nil {
		g.zw = gzip.NewWriter(g.w)
		g.zw.OS = GzipOSUnix
		if _, err := g.zw.Write(g.buf); err != nil {
			g.err = err
			return 0, err
		}
		g.buf = nil
	}
	n, err := g.zw.Write(p)
	if err != nil {
		g.err = err
	}
	return n, err
}

var errClosed = errors.New("artifacts: gzip writer closed")

// Close finishes the stream.
func (g *Gzip) Close() error {
	if g.err != nil {
		if g.err == errClosed {
			return nil
		}
		return g.err
	}
	defer func() {
		if g.err == nil {
			g.err = errClosed
		}
	}()
	if g.zw != nil {
		if err := g.zw.Close(); err != nil {
			g.err = err
			return err
		}
		return nil
	}
	body := fixedLiterals(g.buf)
	var fl bytes.Buffer
	fw, _ := flate.NewWriter(&fl, flate.DefaultCompression) // the level is valid: no error
	fw.Write(g.buf)                                         // writes to a bytes.Buffer cannot fail
	fw.Close()
	if fl.Len() < len(body) {
		body = fl.Bytes()
	}
	out := make([]byte, 0, 10+len(body)+8)
	out = append(out, 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, GzipOSUnix)
	out = append(out, body...)
	out = binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(g.buf))
	out = binary.LittleEndian.AppendUint32(out, uint32(len(g.buf)))
	if _, err := g.w.Write(out); err != nil {
		g.err = err
		return err
	}
	return nil
}

// fixedLiterals encodes p as one final DEFLATE block with the fixed Huffman
// code, literals only (RFC 1951 §3.2.6).
func fixedLiterals(p []byte) []byte {
	var bw bitWriter
	bw.bits(1, 1) // BFINAL
	bw.bits(1, 2) // BTYPE 01: fixed Huffman
	for _, c := range p {
		if c < 144 {
			bw.code(0x30+uint32(c), 8)
		} else {
			bw.code(0x190+uint32(c)-144, 9)
		}
	}
	bw.code(0, 7) // end of block
	return bw.bytes()
}

// bitWriter packs bits least-significant first, as DEFLATE does.
type bitWriter struct {
	out  []byte
	acc  uint32
	nacc uint
}

// bits writes the n low bits of v, least significant first (header fields).
func (b *bitWriter) bits(v uint32, n uint) {
	for i := range n {
		b.bit(v >> i & 1)
	}
}

// code writes an n-bit Huffman code, most significant bit first.
func (b *bitWriter) code(c uint32, n uint) {
	for i := n; i > 0; i-- {
		b.bit(c >> (i - 1) & 1)
	}
}

func (b *bitWriter) bit(v uint32) {
	b.acc |= v << b.nacc
	b.nacc++
	if b.nacc == 8 {
		b.out = append(b.out, byte(b.acc))
		b.acc, b.nacc = 0, 0
	}
}

func (b *bitWriter) bytes() []byte {
	if b.nacc > 0 {
		b.out = append(b.out, byte(b.acc))
		b.acc, b.nacc = 0, 0
	}
	return b.out
}
