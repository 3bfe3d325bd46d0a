package artifacts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/schemas"
	wa "go.dockerworker.dev/docker-worker/worker/artifacts"
	"go.dockerworker.dev/docker-worker/worker/docker"
)

// layers is a stopped container's file system read from its overlay2
// layers (worker/artifacts.Root), with what is not in them.
type layers struct {
	root *wa.Root
	info docker.ContainerLayers
}

// openLayers opens the container's layers for reading, or returns nil when
// artifacts must go through the archive API: no Layers in the config, not
// root, a storage driver other than overlay2, or any error (logged once
// per worker, at debug level).
func (k *task) openLayers(ctx context.Context, id string) *layers {
	if k.cfg.Layers == nil || id == "" {
		return nil
	}
	slow := func(why string, err error) *layers {
		k.f.slow.Do(func() {
			k.t.Logger().Debug("artifacts are read through the Docker archive API", "why", why, "error", err)
		})
		return nil
	}
	if os.Geteuid() != 0 {
		return slow("not root", nil)
	}
	info, err := k.cfg.Layers.InspectLayers(ctx, id)
	if err != nil {
		return slow("inspect", err)
	}
	if info.Driver != "overlay2" || len(info.Layers) == 0 {
		return slow("storage driver "+info.Driver, nil)
	}
	root, err := wa.OpenLayers(info.Layers)
	if err != nil {
		return slow("mount", err)
	}
	return &layers{root: root, info: info}
}

// mounted reports whether p (a clean absolute container path) is a mount
// point or lies below one (its content is then not in the layers) or, with
// below, has one below it (a directory not all in the layers).
func (l *layers) mounted(p string, below bool) bool {
	for _, m := range l.info.MountPoints {
		if within(p, m) || below && within(m, p) {
			return true
		}
	}
	return false
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

// fastArtifact uploads one payload artifact read from the layers. done is
// false when the archive API must be used instead (the path is missing,
// is not a file or a directory, is on a mount point, or holds a name the
// archive reader would reject): nothing was uploaded then. With done, err
// is an upload failure, as from artifact.
func (k *task) fastArtifact(ctx context.Context, l *layers, g *wa.Group, dir, name string, a schemas.Artifact) (done bool, err error) {
	if err := checkName(name); err != nil {
		return true, err
	}
	abs := a.Path
	if !path.IsAbs(abs) {
		abs = path.Join("/", l.info.WorkingDir, abs)
	}
	abs = path.Clean(abs)
	if l.mounted(abs, false) {
		return false, nil
	}
	n, err := l.root.Lookup(abs)
	if err != nil {
		return false, nil
	}
	defer n.Close()
	isDir := n.Kind == wa.KindDirectory
	walk := isDir && a.Type == wa.KindDirectory // the files below it are read
	if l.mounted(n.Real, walk) || walk && l.mounted(abs, true) || (n.Kind != wa.KindFile && !isDir) {
		return false, nil
	}
	expires := k.expires(a)
	if n.Kind != a.Type {
		return true, k.mismatch(ctx, name, a.Type, n.Kind, expires)
	}
	base := path.Base(abs)
	if n.Kind == wa.KindFile {
		// The upload outlives n: the file is opened by its resolved path.
		real := n.Real
		open := func() (*os.File, error) { return l.root.OpenFile(real) }
		return true, k.uploadFile(ctx, g, dir, name, base, n.Size, open, expires)
	}
	files, err := n.Files()
	if err != nil {
		return false, nil
	}
	// n.Real has no symlink left in it, and Files followed none: each file
	// is opened again by that path, a final symlink refused.
	for _, f := range files {
		p := path.Join(n.Real, f.Rel)
		open := func() (*os.File, error) { return l.root.OpenFile(p) }
		if err := k.uploadFile(ctx, g, dir, wa.JoinName(name, f.Rel), path.Join(base, f.Rel), f.Size, open, expires); err != nil {
			return true, err
		}
	}
	return true, nil
}

// uploadFile uploads one regular file read from the layers (waiting for a
// free upload slot first). A gzipped file is compressed into a temporary
// file (its compressed length is needed); any other is sent straight from
// the file, hashed on the way, and read again for a retry. entry is the
// name the archive would have given it (its extension picks the content
// type and the compression). Upload failures are recorded with fail; the
// error return is for failures to read the file, which end the artifact.
func (k *task) uploadFile(ctx context.Context, g *wa.Group, dir, name, entry string, size int64, open func() (*os.File, error), expires time.Time) error {
	if err := g.Acquire(ctx); err != nil {
		return err
	}
	u := features.Upload{
		Name:        name,
		ContentType: wa.ContentType(entry),
		Expires:     expires,
		Size:        size,
	}
	var spooled string
	if wa.Compress(entry, k.cfg.SkipCompression) {
		f, err := open()
		if err != nil {
			g.Release()
			return err
		}
		sp, err := wa.SpoolSized(dir, io.LimitReader(f, size), true, size)
		f.Close()
		if err == nil && sp.RawSize != size {
			os.Remove(sp.Path)
			err = fmt.Errorf("%s ended after %d of %d bytes", entry, sp.RawSize, size)
		}
		if err != nil {
			g.Release()
			return err
		}
		spooled = sp.Path
		u.ContentEncoding = "gzip"
		u.Size, u.Open, u.SHA256 = sp.Size, sp.Open, sp.SHA256
	} else {
		h := &hashedFile{open: open, size: size, done: make(chan struct{})}
		u.Open, u.Digest = h.body, h.digest
	}
	g.Go(func() {
		if spooled != "" {
			defer os.Remove(spooled)
		}
		start := time.Now()
		k.t.Logger().Info("Uploading artifact", "name", name, "size", size, "from", "layers")
		if err := k.t.Artifacts().Upload(ctx, u); err != nil {
			k.t.Logger().Warn("Error uploading artifact", "name", name, "error", err)
			k.fail(name, err)
			return
		}
		k.t.Logger().Info("artifact uploaded", "name", name, "size", size, "duration", time.Since(start))
	})
	return nil
}

// hashedFile is the body of an uncompressed upload read from the layers:
// the file itself for each attempt, and its sha256 computed by a second
// reader on another core while the first attempt sends it (the hash is
// off the upload's path; the file system is read-only, so both read the
// same bytes).
type hashedFile struct {
	open func() (*os.File, error)
	size int64

	once sync.Once
	done chan struct{}
	sum  string // "" when the file could not be read to its end
}

func (h *hashedFile) body(context.Context) (io.ReadCloser, error) {
	f, err := h.open()
	if err != nil {
		return nil, err
	}
	h.once.Do(func() { go h.hash() })
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(f, h.size), f}, nil
}

func (h *hashedFile) hash() {
	defer close(h.done)
	f, err := h.open()
	if err != nil {
		return
	}
	defer f.Close()
	d := sha256.New()
	if n, err := io.Copy(d, f); err == nil && n == h.size {
		h.sum = hex.EncodeToString(d.Sum(nil))
	}
}

// digest waits for the hash (asked for once the upload is done).
func (h *hashedFile) digest() string {
	h.once.Do(func() { go h.hash() }) // never opened: hash it now
	<-h.done
	return h.sum
}
