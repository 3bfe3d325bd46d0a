package artifacts

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Kinds of archive entries, named as docker-worker's tar reader named them
// (they appear in "Expected artifact to be a "file" but was "directory"").
const (
	KindFile      = "file"
	KindDirectory = "directory"
	KindSymlink   = "symlink"
	KindLink      = "link"
	KindCharDev   = "character-device"
	KindBlockDev  = "block-device"
	KindFIFO      = "fifo"
	KindUnknown   = "unknown"
)

// Kind names the type of a tar entry.
func Kind(h *tar.Header) string {
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeCont:
		if strings.HasSuffix(h.Name, "/") {
			return KindDirectory
		}
		return KindFile
	case tar.TypeDir:
		return KindDirectory
	case tar.TypeSymlink:
		return KindSymlink
	case tar.TypeLink:
		return KindLink
	case tar.TypeChar:
		return KindCharDev
	case tar.TypeBlock:
		return KindBlockDev
	case tar.TypeFifo:
		return KindFIFO
	}
	return KindUnknown
}

// ErrUnsafeName is wrapped by errors about archive entry names that could
// escape the directory they belong to, or that make no sense as artifact
// names.
var ErrUnsafeName = errors.New("unsafe entry name")

// CleanName checks an archive entry name and returns it without a trailing
// slash. It must be relative, and every element must be non-empty, not "."
// or "..", valid UTF-8 without control characters. A hostile archive is
// rejected rather than "fixed".
func CleanName(name string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%w %q: %s", ErrUnsafeName, name, why)
	}
	n := strings.TrimSuffix(name, "/")
	switch {
	case n == "":
		return bad("empty")
	case !utf8.ValidString(n):
		return bad("not valid UTF-8")
	case strings.HasPrefix(n, "/") || strings.HasPrefix(n, `\`):
		return bad("absolute")
	case strings.ContainsFunc(n, unicode.IsControl):
		return bad("control character")
	}
	for _, el := range strings.Split(n, "/") {
		switch el {
		case "":
			return bad("empty path element")
		case ".":
			return bad(`"." path element`)
		case "..":
			return bad(`".." path element`)
		}
	}
	return n, nil
}

// Entry is one entry of a container archive.
type Entry struct {
	// Name is the cleaned name (see [CleanName]).
	Name string
	// Rel is Name below the archive's root entry ("" for the root itself).
	Rel    string
	Kind   string
	Header *tar.Header
	// Body reads the entry's content (regular files); it is valid until
	// the next call to [Archive.Next].
	Body io.Reader
}

// Archive reads the tar stream the Docker archive API returns for one path:
// a root entry named after the path's last element, then (for a directory)
// everything below it. Every entry name is checked with [CleanName], and
// every entry after the first must lie below the root.
type Archive struct {
	tr   *tar.Reader
	root string
}

// NewArchive reads r.
func NewArchive(r io.Reader) *Archive { return &Archive{tr: tar.NewReader(r)} }

// Next returns the next entry, or io.EOF after the last. Errors about entry
// names wrap [ErrUnsafeName].
func (a *Archive) Next() (*Entry, error) {
	h, err := a.tr.Next()
	if err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("read archive: %w", err)
	}
	name, err := CleanName(h.Name)
	if err != nil {
		return nil, err
	}
	e := &Entry{Name: name, Kind: Kind(h), Header: h, Body: a.tr}
	if a.root == "" {
		a.root = name
		return e, nil
	}
	rel, ok := strings.CutPrefix(name, a.root+"/")
	if !ok {
		return nil, fmt.Errorf("%w %q: not below the archive root %q", ErrUnsafeName, h.Name, a.root)
	}
	e.Rel = rel
	return e, nil
}

// JoinName is the artifact name of a file at rel below a directory
// artifact called dir: dir + "/" + rel, without doubling a slash dir
// already ends with.
func JoinName(dir, rel string) string {
	return strings.TrimSuffix(dir, "/") + "/" + path.Clean(rel)
}
