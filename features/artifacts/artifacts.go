// Package artifacts is the payload feature "artifacts" (on by default): once
// the task container has exited by itself, every payload artifact is read
// out of it and uploaded, as docker-worker did. On overlay2, as root, files
// are read straight from the container's layers (see fast.go: a detached
// read-only overlay, paths resolved with openat2(RESOLVE_IN_ROOT)); a path
// on or holding a mount point, a missing path, anything but a file or a
// directory, another storage driver, or any error there goes through the
// Docker archive API instead, with the same results. A file artifact is one upload; a directory artifact uploads each
// regular file below it as "<name>/<relative path>" (symlinks, devices and
// other entries are skipped). Each upload gets a content type from its
// extension, gzip content-encoding unless the name ends with a skip-list
// suffix, and the sha256 of its uncompressed bytes (for chain of trust).
//
// A missing path gives an error artifact (file-missing-on-worker) and a
// plain log line; a file where a directory was expected, or the reverse,
// gives an error artifact (invalid-resource-on-worker) and an error line.
// Neither fails the task. An upload that fails after the publisher's
// retries fails the task, with the error in the log.
//
// Before anything runs, a payload naming an artifact the queue cannot store
// (empty, or not printable ASCII) or a path with a NUL byte is refused as
// malformed (see [Feature.CheckPayload]).
//
// Archives from the container are hostile input: entry names are checked
// (no absolute names, no "..", nothing outside the artifact's root), entry
// bodies are streamed into private temporary files (never held in memory,
// never written under a name taken from the archive), and links are never
// followed.
package artifacts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/schemas"
	wa "go.dockerworker.dev/docker-worker/worker/artifacts"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/tasklog"
)

// Name is the feature's payload key.
const Name = "artifacts"

// DefaultParallelism is how many uploads run at once when Config does not say.
const DefaultParallelism = 4

// Error artifact reasons (the queue's names).
const (
	reasonMissing = "file-missing-on-worker"
	reasonInvalid = "invalid-resource-on-worker"
)

// maxErrorMessage is the longest message an error artifact may carry.
const maxErrorMessage = 4096

// Config configures the feature.
type Config struct {
	// SkipCompression lists name suffixes that are uploaded without gzip
	// (nil: worker/artifacts.DefaultSkipCompression).
	SkipCompression []string
	// Parallelism bounds concurrent uploads per task (0: DefaultParallelism).
	Parallelism int
	// TempDir holds the per-task spool directories ("" for the system default).
	TempDir string
	// StreamThreshold: an uncompressed file at least this large is sent
	// straight from the container archive to the upload (its length is in
	// the tar header), instead of through a temporary file
	// (0: DefaultStreamThreshold; negative: never).
	StreamThreshold int64
	// Layers, when set, lets the feature read artifacts straight from the
	// stopped container's overlay2 layers instead of through the archive
	// API (see fast.go); nil: always the archive API.
	Layers Layers
}

// Layers describes a container's storage (worker/docker.Client).
type Layers interface {
	InspectLayers(ctx context.Context, id string) (docker.ContainerLayers, error)
}

// DefaultStreamThreshold is Config.StreamThreshold's default.
const DefaultStreamThreshold = 32 << 20

// Feature is the artifacts feature.
type Feature struct {
	cfg Config
	// slow is logged once: why artifacts are not read from the layers.
	slow sync.Once
}

var (
	_ features.Feature        = (*Feature)(nil)
	_ features.Defaulter      = (*Feature)(nil)
	_ features.PayloadChecker = (*Feature)(nil)
)

// New returns the feature.
func New(cfg Config) *Feature {
	if cfg.SkipCompression == nil {
		cfg.SkipCompression = wa.DefaultSkipCompression
	}
	if cfg.Parallelism <= 0 {
		cfg.Parallelism = DefaultParallelism
	}
	if cfg.StreamThreshold == 0 {
		cfg.StreamThreshold = DefaultStreamThreshold
	}
	return &Feature{cfg: cfg}
}

// Name implements features.Feature.
func (f *Feature) Name() string { return Name }

// DefaultEnabled implements features.Defaulter: docker-worker ran the
// feature unless the payload turned it off.
func (f *Feature) DefaultEnabled() bool { return true }

// CheckPayload implements features.PayloadChecker: every artifact name
// must be one the queue can store (see worker/artifacts.CheckArtifactName)
// and every path one the Docker archive API can be asked for (not empty,
// no NUL byte). It checks the payload whether or not the task turns the
// feature off: such a payload is wrong either way.
func (f *Feature) CheckPayload(p *schemas.Payload) []schemas.Problem {
	names := make([]string, 0, len(p.Artifacts))
	for n := range p.Artifacts {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []schemas.Problem
	for _, name := range names {
		at := schemas.MemberPath(schemas.MemberPath("payload", "artifacts"), name)
		if err := wa.CheckArtifactName(name); err != nil {
			out = append(out, schemas.Problem{Path: at, Message: err.Error()})
		}
		if msg := badContainerPath(p.Artifacts[name].Path); msg != "" {
			out = append(out, schemas.Problem{Path: at + ".path", Message: msg})
		}
	}
	return out
}

// badContainerPath says why path cannot be read out of a container, or "".
func badContainerPath(path string) string {
	switch {
	case path == "":
		return "the path must not be empty"
	case strings.IndexByte(path, 0) >= 0:
		return fmt.Sprintf("the path %q must not contain a NUL byte", path)
	}
	return ""
}

// NewTask implements features.Feature.
func (f *Feature) NewTask(t features.Task) (features.TaskFeature, error) {
	return &task{t: t, cfg: f.cfg, f: f}, nil
}

type task struct {
	t   features.Task
	cfg Config
	f   *Feature

	mu   sync.Mutex
	errs []error
}

var _ features.Exiter = (*task)(nil)

// Exited uploads the payload artifacts.
func (k *task) Exited(ctx context.Context, req *features.ExitedRequest) error {
	p := k.t.Payload()
	if p == nil || len(p.Artifacts) == 0 {
		return nil
	}
	dir, err := os.MkdirTemp(k.cfg.TempDir, "artifacts-*")
	if err != nil {
		k.errorLine("Encountered error when uploading artifact(s)")
		return fmt.Errorf("artifacts: spool directory: %w", err)
	}
	defer os.RemoveAll(dir)

	names := make([]string, 0, len(p.Artifacts))
	for n := range p.Artifacts {
		names = append(names, n)
	}
	sort.Strings(names)
	g := wa.NewGroup(k.cfg.Parallelism)
	lay := k.openLayers(ctx, req.ContainerID)
	if lay != nil {
		defer lay.root.Close()
	}
	for _, name := range names {
		a := p.Artifacts[name]
		if lay != nil {
			if done, err := k.fastArtifact(ctx, lay, g, dir, name, a); done {
				if err != nil {
					k.fail(name, err)
				}
				continue
			}
		}
		if err := k.artifact(ctx, req.Container, g, dir, name, a); err != nil {
			k.fail(name, err)
		}
	}
	g.Wait()
	k.mu.Lock()
	err = errors.Join(k.errs...)
	k.mu.Unlock()
	if err != nil {
		k.errorLine("Encountered error when uploading artifact(s)")
		return fmt.Errorf("artifacts: %w", err)
	}
	return nil
}

// fail records an upload failure and writes docker-worker's error line.
func (k *task) fail(name string, err error) {
	k.errorLine(fmt.Sprintf("Error uploading %q artifact. %v", name, err))
	k.mu.Lock()
	k.errs = append(k.errs, fmt.Errorf("upload %q: %w", name, err))
	k.mu.Unlock()
}

func (k *task) errorLine(msg string) { io.WriteString(k.t.Log(), tasklog.ErrorLine(msg)) }

func (k *task) infoLine(msg string) {
	io.WriteString(k.t.Log(), tasklog.InfoLine(time.Now(), msg))
}

func (k *task) expires(a schemas.Artifact) time.Time {
	if a.Expires != nil {
		return *a.Expires
	}
	return k.t.Expires()
}

// artifact reads one payload artifact out of the container and starts its
// uploads in g. Missing and mismatched artifacts become error artifacts; an
// error return means the artifact could not be uploaded.
func (k *task) artifact(ctx context.Context, c features.ContainerFiles, g *wa.Group, dir, name string, a schemas.Artifact) error {
	pub := k.t.Artifacts()
	expires := k.expires(a)
	if err := checkName(name); err != nil {
		return err
	}
	rc, _, err := c.CopyFrom(ctx, a.Path)
	if errors.Is(err, fs.ErrNotExist) {
		msg := fmt.Sprintf("Artifact %q not found at %q: %s", name, a.Path, daemonMessage(err))
		k.infoLine(msg)
		k.t.Logger().Info("artifact missing", "name", name, "path", a.Path)
		return pub.Error(ctx, name, reasonMissing, truncate(msg), expires)
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	arc := wa.NewArchive(rc)
	root, err := arc.Next()
	if errors.Is(err, io.EOF) {
		err = errors.New("the container returned an empty archive")
	}
	if err != nil {
		return k.invalid(ctx, name, expires, err)
	}
	if root.Kind != a.Type {
		return k.mismatch(ctx, name, a.Type, root.Kind, expires)
	}
	if root.Kind == wa.KindFile {
		return k.upload(ctx, c, g, dir, name, a.Path, root, expires)
	}
	for {
		e, err := arc.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if errors.Is(err, wa.ErrUnsafeName) {
			return k.invalid(ctx, name, expires, err)
		}
		if err != nil {
			return err
		}
		if e.Kind != wa.KindFile {
			continue
		}
		full := wa.JoinName(name, e.Rel)
		if err := k.upload(ctx, c, g, dir, full, path.Join(a.Path, e.Rel), e, expires); err != nil {
			return err
		}
	}
}

// mismatch records a file where a directory was expected, or the reverse.
func (k *task) mismatch(ctx context.Context, name, want, got string, expires time.Time) error {
	msg := fmt.Sprintf("Error uploading %q. Expected artifact to be a %q but was %q", name, want, got)
	k.errorLine(msg)
	return k.t.Artifacts().Error(ctx, name, reasonInvalid, truncate(msg), expires)
}

// invalid turns an unusable archive into an error artifact and an error line.
func (k *task) invalid(ctx context.Context, name string, expires time.Time, cause error) error {
	msg := fmt.Sprintf("Error uploading %q. The archive of the artifact could not be used: %v", name, cause)
	k.errorLine(msg)
	k.t.Logger().Warn("artifact archive rejected", "name", name, "error", cause)
	return k.t.Artifacts().Error(ctx, name, reasonInvalid, truncate(msg), expires)
}

// upload spools one regular-file entry (waiting for a free upload slot
// first, so spooled files are bounded too) and uploads it in the background.
// Upload failures are recorded with fail; the error return is for failures
// to read the entry, which end the artifact.
func (k *task) upload(ctx context.Context, c features.ContainerFiles, g *wa.Group, dir, name, src string, e *wa.Entry, expires time.Time) error {
	if err := g.Acquire(ctx); err != nil {
		return err
	}
	gz := wa.Compress(e.Name, k.cfg.SkipCompression)
	if !gz && k.cfg.StreamThreshold > 0 && e.Header.Size >= k.cfg.StreamThreshold {
		defer g.Release()
		k.stream(ctx, c, name, src, e, expires)
		return nil
	}
	sp, err := wa.Spool(dir, io.LimitReader(e.Body, e.Header.Size), gz)
	if err == nil && sp.RawSize != e.Header.Size {
		os.Remove(sp.Path)
		err = fmt.Errorf("archive entry %q ended after %d of %d bytes", e.Name, sp.RawSize, e.Header.Size)
	}
	if err != nil {
		g.Release()
		return err
	}
	u := features.Upload{
		Name:        name,
		ContentType: wa.ContentType(e.Name),
		Expires:     expires,
		Size:        sp.Size,
		Open:        sp.Open,
		SHA256:      sp.SHA256,
	}
	if gz {
		u.ContentEncoding = "gzip"
	}
	g.Go(func() {
		defer os.Remove(sp.Path)
		start := time.Now()
		k.t.Logger().Info("Uploading artifact", "name", name, "size", sp.RawSize, "from", "archive")
		if err := k.t.Artifacts().Upload(ctx, u); err != nil {
			k.t.Logger().Warn("Error uploading artifact", "name", name, "error", err)
			k.fail(name, err)
			return
		}
		k.t.Logger().Info("artifact uploaded", "name", name, "size", sp.RawSize, "duration", time.Since(start))
	})
	return nil
}

// stream uploads a large uncompressed entry while it is read from the
// container archive: no temporary file, and no second pass over the bytes.
// It holds the archive (the next entry cannot be read before this one is),
// so it runs in the caller's goroutine. A retry reads the file out of the
// container again. Upload failures are recorded with fail.
func (k *task) stream(ctx context.Context, c features.ContainerFiles, name, src string, e *wa.Entry, expires time.Time) {
	s := &streamedEntry{c: c, src: src, size: e.Header.Size, first: e.Body}
	u := features.Upload{
		Name:        name,
		ContentType: wa.ContentType(e.Name),
		Expires:     expires,
		Size:        e.Header.Size,
		Open:        s.open,
		Digest:      s.digest,
	}
	start := time.Now()
	k.t.Logger().Info("Uploading artifact", "name", name, "size", e.Header.Size, "streamed", true, "from", "archive")
	if err := k.t.Artifacts().Upload(ctx, u); err != nil {
		k.t.Logger().Warn("Error uploading artifact", "name", name, "error", err)
		k.fail(name, err)
		return
	}
	k.t.Logger().Info("artifact uploaded", "name", name, "size", e.Header.Size, "duration", time.Since(start))
}

// streamedEntry is the body of a streamed upload: the archive entry being
// read for the first attempt, the file read out of the container again for
// each retry, hashed as it is read.
type streamedEntry struct {
	c     features.ContainerFiles
	src   string
	size  int64
	first io.Reader

	mu  sync.Mutex
	sum string // sha256 of the last body read to its end
}

func (s *streamedEntry) open(ctx context.Context) (io.ReadCloser, error) {
	if r := s.first; r != nil {
		s.first = nil
		return &hashingBody{r: io.LimitReader(r, s.size), s: s, h: sha256.New()}, nil
	}
	rc, _, err := s.c.CopyFrom(ctx, s.src)
	if err != nil {
		return nil, fmt.Errorf("read %s from the container again: %w", s.src, err)
	}
	e, err := wa.NewArchive(rc).Next()
	if err == nil && (e.Kind != wa.KindFile || e.Header.Size != s.size) {
		err = fmt.Errorf("%s changed in the container: now a %s of %d bytes", s.src, e.Kind, e.Header.Size)
	}
	if err != nil {
		rc.Close()
		return nil, err
	}
	return &hashingBody{r: io.LimitReader(e.Body, s.size), c: rc, s: s, h: sha256.New()}, nil
}

func (s *streamedEntry) digest() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sum
}

// hashingBody hashes what is read through it; at the entry's end it
// records the digest on its streamedEntry.
type hashingBody struct {
	r io.Reader
	c io.Closer // the archive stream of a retry; nil for the first body
	s *streamedEntry
	h hash.Hash
	n int64
}

func (b *hashingBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.h.Write(p[:n])
	b.n += int64(n)
	if n > 0 && b.n == b.s.size {
		b.s.mu.Lock()
		b.s.sum = hex.EncodeToString(b.h.Sum(nil))
		b.s.mu.Unlock()
	}
	if err == io.EOF && b.n != b.s.size {
		return n, fmt.Errorf("archive entry ended after %d of %d bytes", b.n, b.s.size)
	}
	return n, err
}

func (b *hashingBody) Close() error {
	if b.c != nil {
		return b.c.Close()
	}
	return nil
}

// checkName rejects artifact names that are not valid UTF-8 or contain
// control characters.
func checkName(name string) error {
	if name == "" || !utf8.ValidString(name) || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("invalid artifact name %q", name)
	}
	return nil
}

// daemonMessage is the Docker daemon's text in a not-found error.
func daemonMessage(err error) string {
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, fs.ErrNotExist.Error()+": "); ok {
		return rest
	}
	return msg
}

func truncate(s string) string {
	if len(s) <= maxErrorMessage {
		return s
	}
	s = s[:maxErrorMessage]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
