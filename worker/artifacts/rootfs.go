//go:build linux

package artifacts

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Root is a stopped container's file system, read without the Docker
// archive API: a read-only overlay of the container's layer directories,
// held only as a file descriptor. Paths are resolved inside it with
// openat2(RESOLVE_IN_ROOT), so "..", absolute symlinks and symlinks full of
// ".." all stay inside it, as they would inside the container.
//
// The overlay is created with the kernel's mount API (fsopen, fsconfig,
// fsmount) as a detached mount: it is attached nowhere, visible to no one
// else, and gone once its descriptor is closed or the worker dies, so
// nothing can be left mounted.
type Root struct {
	fd int
}

// resolveInRoot are the openat2 resolve flags for paths from a Root.
const resolveInRoot = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// OpenLayers creates a read-only overlay of layers (topmost first, as
// overlayfs's lowerdir lists them) and returns its root. It needs
// CAP_SYS_ADMIN and Linux 5.2 or later (the mount API); layer lists too
// long for one mount option need Linux 6.8 ("lowerdir+").
func OpenLayers(layers []string) (*Root, error) {
	if len(layers) == 0 {
		return nil, errors.New("open layers: no layers")
	}
	for _, l := range layers {
		if strings.ContainsAny(l, ":,\\") || !filepath.IsAbs(l) {
			return nil, fmt.Errorf("open layers: layer path %q cannot be given to overlayfs", l)
		}
	}
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("open layers: fsopen overlay: %w", err)
	}
	defer unix.Close(fsfd)
	// One layer at a time where the kernel takes it (no length limit),
	// else all of them in one option.
	for i, l := range layers {
		if err = unix.FsconfigSetString(fsfd, "lowerdir+", l); err != nil {
			if i > 0 {
				return nil, fmt.Errorf("open layers: lowerdir+ %s: %w", l, err)
			}
			err = unix.FsconfigSetString(fsfd, "lowerdir", strings.Join(layers, ":"))
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open layers: lowerdir: %w", err)
	}
	// Not required; older kernels without the option work as well.
	_ = unix.FsconfigSetString(fsfd, "index", "off")
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return nil, fmt.Errorf("open layers: create overlay: %w", err)
	}
	fd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC,
		unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
	if err != nil {
		return nil, fmt.Errorf("open layers: fsmount: %w", err)
	}
	return &Root{fd: fd}, nil
}

// OpenDir returns a Root of an existing directory (no mount): paths are
// resolved inside it exactly as inside an overlay from [OpenLayers].
func OpenDir(dir string) (*Root, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open root %s: %w", dir, err)
	}
	return &Root{fd: fd}, nil
}

// Close releases the root (and with the last reference, the overlay).
func (r *Root) Close() error {
	if r.fd < 0 {
		return nil
	}
	err := unix.Close(r.fd)
	r.fd = -1
	return err
}

// Node is a path resolved inside a Root the way the Docker archive API
// resolves it: every element but the last is followed (symlinks inside
// the root), the last one is not.
type Node struct {
	// Kind is the node's type, named as [Kind] names tar entries.
	Kind string
	// Size is a regular file's length.
	Size int64
	// Real is the node's path from the root with every symlink resolved.
	Real string

	parent int // O_PATH descriptor of the parent directory
	name   string
}

// Lookup resolves p inside the root ("" or relative paths resolve against
// "/"). A missing path gives an error satisfying errors.Is(err,
// fs.ErrNotExist).
func (r *Root) Lookup(p string) (*Node, error) {
	clean := path.Clean("/" + p)
	dir, name := path.Split(clean)
	if name == "" {
		dir, name = "/", "."
	}
	pfd, err := openat2(r.fd, dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, resolveInRoot)
	if err != nil {
		return nil, &fs.PathError{Op: "lookup", Path: p, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		unix.Close(pfd)
		return nil, &fs.PathError{Op: "lookup", Path: p, Err: err}
	}
	real, err := fdPath(pfd)
	if err != nil {
		unix.Close(pfd)
		return nil, err
	}
	n := &Node{Kind: modeKind(st.Mode), Size: st.Size, Real: path.Join(real, name), parent: pfd, name: name}
	runtime.SetFinalizer(n, (*Node).Close)
	return n, nil
}

// Close releases the node.
func (n *Node) Close() error {
	if n.parent < 0 {
		return nil
	}
	runtime.SetFinalizer(n, nil)
	err := unix.Close(n.parent)
	n.parent = -1
	return err
}

// Open opens the node, a regular file, for reading.
func (n *Node) Open() (*os.File, error) {
	fd, err := unix.Openat(n.parent, n.name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: n.Real, Err: err}
	}
	f := os.NewFile(uintptr(fd), n.Real)
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("open %s: not a regular file", n.Real)
	}
	return f, nil
}

// OpenFile opens the regular file at p inside the root for reading,
// following symlinks inside the root on the way but not a final one.
func (r *Root) OpenFile(p string) (*os.File, error) {
	fd, err := openat2(r.fd, p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NOCTTY, resolveInRoot)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	f := os.NewFile(uintptr(fd), p)
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("open %s: not a regular file", p)
	}
	return f, nil
}

// File is a regular file found by [Node.Files].
type File struct {
	Rel  string
	Size int64
}

// Files lists the regular files below the node, a directory, as the
// archive API would return them: in lexical order, symlinks not followed,
// and a file whose inode was already listed (a hard link) left out, as the
// archive lists it as a link. Every name is checked with [CleanName].
func (n *Node) Files() ([]File, error) {
	dfd, err := unix.Openat(n.parent, n.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: n.Real, Err: err}
	}
	w := walker{seen: map[[2]uint64]bool{}}
	err = w.dir(dfd, "")
	return w.files, err
}

type walker struct {
	files []File
	seen  map[[2]uint64]bool
}

// dir lists the directory open as dfd (and closes it).
func (w *walker) dir(dfd int, rel string) error {
	d := os.NewFile(uintptr(dfd), rel)
	names, err := d.Readdirnames(-1)
	if err != nil {
		d.Close()
		return fmt.Errorf("read directory %q: %w", rel, err)
	}
	defer d.Close()
	sort.Strings(names)
	for _, name := range names {
		r := path.Join(rel, name)
		if _, err := CleanName(r); err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("stat %q: %w", r, err)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			if st.Nlink > 1 {
				key := [2]uint64{uint64(st.Dev), st.Ino}
				if w.seen[key] {
					continue
				}
				w.seen[key] = true
			}
			w.files = append(w.files, File{Rel: r, Size: st.Size})
		case unix.S_IFDIR:
			sub, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("open directory %q: %w", r, err)
			}
			if err := w.dir(sub, r); err != nil {
				return err
			}
		}
	}
	return nil
}

func openat2(dirfd int, p string, flags int, resolve uint64) (int, error) {
	// EAGAIN: a rename or a mount anywhere raced a ".." in a scoped
	// lookup; the kernel asks for a retry.
	for try := 0; ; try++ {
		fd, err := unix.Openat2(dirfd, p, &unix.OpenHow{Flags: uint64(flags), Resolve: resolve})
		if (err == unix.EINTR || err == unix.EAGAIN) && try < 16 {
			continue
		}
		return fd, err
	}
}

// fdPath is the path of an O_PATH directory descriptor from the root of
// its mount (for a detached overlay, from the container's root).
func fdPath(fd int) (string, error) {
	p, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		return "", fmt.Errorf("path of a resolved directory: %w", err)
	}
	return p, nil
}

func modeKind(m uint32) string {
	switch m & unix.S_IFMT {
	case unix.S_IFREG:
		return KindFile
	case unix.S_IFDIR:
		return KindDirectory
	case unix.S_IFLNK:
		return KindSymlink
	case unix.S_IFCHR:
		return KindCharDev
	case unix.S_IFBLK:
		return KindBlockDev
	case unix.S_IFIFO:
		return KindFIFO
	}
	return KindUnknown
}
