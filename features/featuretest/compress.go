package featuretest

import (
	"bytes"
	"compress/gzip"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Gzip, LZ4 and Zstd compress b in memory, for tests of what decodes them
// (task images, artifacts).
func Gzip(b []byte) []byte {
	return compress(b, func(w io.Writer) io.WriteCloser { return gzip.NewWriter(w) })
}

// LZ4 is Gzip's sibling for the lz4 frame format.
func LZ4(b []byte) []byte {
	return compress(b, func(w io.Writer) io.WriteCloser { return lz4.NewWriter(w) })
}

// Zstd is Gzip's sibling for zstd.
func Zstd(b []byte) []byte {
	return compress(b, func(w io.Writer) io.WriteCloser {
		zw, err := zstd.NewWriter(w)
		if err != nil {
			panic(err) // only for invalid options, and there are none
		}
		return zw
	})
}

func compress(b []byte, newWriter func(io.Writer) io.WriteCloser) []byte {
	var buf bytes.Buffer
	zw := newWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}
