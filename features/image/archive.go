package image

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// format is how an image artifact is compressed, told by its name's
// extension.
type format int

const (
	formatTar format = iota
	formatGzip
	formatLZ4
	formatZstd
)

// formatNames name the formats in errors.
var formatNames = map[format]string{formatTar: "tar", formatGzip: "gzip", formatLZ4: "lz4", formatZstd: "zstd"}

// ErrUnsupportedFormat is the error for an artifact name whose extension
// is not an image archive's.
var ErrUnsupportedFormat = errors.New("Unsupported image file format. Expected tarball with extension: .tar.zst, .tar.lz4, .tar.gz, .tgz or .tar")

// formatOf tells the archive format from an artifact name.
func formatOf(path string) (format, error) {
	p := strings.ToLower(path)
	switch {
	case strings.HasSuffix(p, ".tar"):
		return formatTar, nil
	case strings.HasSuffix(p, ".tar.gz"), strings.HasSuffix(p, ".tgz"):
		return formatGzip, nil
	case strings.HasSuffix(p, ".tar.lz4"):
		return formatLZ4, nil
	case strings.HasSuffix(p, ".tar.zst"):
		return formatZstd, nil
	}
	return 0, ErrUnsupportedFormat
}

// decompress returns the tar stream held in r, compressed as f; close
// releases the decoder.
func decompress(f format, r io.Reader) (tar io.Reader, close func(), err error) {
	switch f {
	case formatGzip:
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, func() { zr.Close() }, nil
	case formatLZ4:
		return lz4.NewReader(r), func() {}, nil
	case formatZstd:
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nil, fmt.Errorf("zstd: %w", err)
		}
		return zr, zr.Close, nil
	}
	return r, func() {}, nil
}
