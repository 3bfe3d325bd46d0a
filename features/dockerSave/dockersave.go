// Package dockersave is the dockerSave payload feature: once the task
// container has exited by itself, the container is committed to an image,
// which is saved (`docker save`) and uploaded gzip-encoded as
// public/dockerImage.tar, and each cache the task mounted is uploaded as
// public/cache/<name>.tar. The committed image is removed afterwards,
// whether the uploads worked or not.
//
// The image is committed as <repo>:latest, repo being the task ID in lower
// case with '-' and '_' replaced by '0', a dash and the run ID, as
// docker-worker named it; `docker load` of the artifact brings it back
// under that name.
//
// The caches are read out of the stopped container at the paths the
// payload mounts them (payload.cache), through the same archive API that
// artifacts use, so the feature needs nothing from the cache feature: the
// container sees exactly the cache instance the run held. Each archive
// holds the cache's contents at its root. Unlike docker-worker, symbolic
// links are archived as links rather than followed.
//
// Artifacts expire at the configured expiration from now (docker-worker's
// 7 days by default), never after the task expires.
package dockersave

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"maps"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/worker/tasklog"
)

// Name is the feature's key under payload.features.
const Name = "dockerSave"

// Artifact names and type.
const (
	ImageArtifact = "public/dockerImage.tar"
	// CacheArtifactPrefix + <cache name> + ".tar" is a cache's artifact.
	CacheArtifactPrefix = "public/cache/"
	ContentType         = "application/x-tar"
)

// DefaultExpiration is docker-worker's dockerSave.expiration.
const DefaultExpiration = 7 * 24 * time.Hour

// removeTimeout bounds the removal of the committed image when the task
// context is already done.
const removeTimeout = time.Minute

// Docker is what the feature needs of the Docker client
// (*docker.Client implements it).
type Docker interface {
	// Commit creates an image tagged ref from a container.
	Commit(ctx context.Context, containerID, ref string) (string, error)
	// SaveImage streams ref as a `docker save` archive.
	SaveImage(ctx context.Context, ref string) (io.ReadCloser, error)
	// RemoveImage untags ref (a missing image is no error).
	RemoveImage(ctx context.Context, ref string) error
}

// Config is what the feature is built with.
type Config struct {
	Docker Docker
	// Expiration is how long the artifacts are kept (0: DefaultExpiration),
	// capped at the task's expiry.
	Expiration time.Duration
	// TempDir holds the compressed archives while they upload ("": the
	// system default).
	TempDir string
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Feature is the dockerSave feature.
type Feature struct{ cfg Config }

var _ features.Feature = (*Feature)(nil)

// New returns the feature. It has no side effects.
func New(cfg Config) *Feature {
	if cfg.Expiration <= 0 {
		cfg.Expiration = DefaultExpiration
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Feature{cfg: cfg}
}

// Name implements features.Feature.
func (f *Feature) Name() string { return Name }

// NewTask implements features.Feature.
func (f *Feature) NewTask(t features.Task) (features.TaskFeature, error) {
	if f.cfg.Docker == nil {
		return nil, errors.New("dockerSave: the worker has no Docker client")
	}
	return &task{cfg: f.cfg, t: t, ref: ImageRef(t.TaskID(), t.RunID())}, nil
}

// RepoName is the repository docker-worker committed a run's container
// to: the task ID in lower case with '-' and '_' replaced by '0', a dash
// and the run ID.
func RepoName(taskID string, runID int) string {
	r := strings.NewReplacer("-", "0", "_", "0")
	return r.Replace(strings.ToLower(taskID)) + "-" + strconv.Itoa(runID)
}

// ImageRef is the reference of a run's committed image (RepoName:latest).
func ImageRef(taskID string, runID int) string {
	return RepoName(taskID, runID) + ":latest"
}

type task struct {
	cfg Config
	t   features.Task
	ref string

	committed bool // the image exists until Cleanup removes it
}

var (
	_ features.Exiter  = (*task)(nil)
	_ features.Cleaner = (*task)(nil)
)

// Exited implements features.Exiter.
func (k *task) Exited(ctx context.Context, req *features.ExitedRequest) error {
	expires := k.cfg.Now().Add(k.cfg.Expiration)
	if te := k.t.Expires(); !te.IsZero() && te.Before(expires) {
		expires = te
	}
	var errs []error
	if err := k.saveImage(ctx, req.ContainerID, expires); err != nil {
		errs = append(errs, err)
	}
	if p := k.t.Payload(); p != nil {
		for _, name := range slices.Sorted(maps.Keys(p.Cache)) {
			if err := k.saveCache(ctx, req.Container, name, p.Cache[name], expires); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// saveImage commits the container, uploads the saved image and removes it.
func (k *task) saveImage(ctx context.Context, containerID string, expires time.Time) error {
	k.logf("Saving the task container as image %s (%s)", k.ref, ImageArtifact)
	if _, err := k.cfg.Docker.Commit(ctx, containerID, k.ref); err != nil {
		return fmt.Errorf("dockerSave: %w", err)
	}
	k.committed = true
	defer k.removeImage(ctx)
	err := k.upload(ctx, ImageArtifact, expires, func(w io.Writer) error {
		stream, err := k.cfg.Docker.SaveImage(ctx, k.ref)
		if err != nil {
			return err
		}
		defer stream.Close()
		if _, err := io.Copy(w, stream); err != nil {
			return fmt.Errorf("read the saved image: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("dockerSave: %s: %w", ImageArtifact, err)
	}
	return nil
}

// saveCache uploads the cache mounted at target as a tar of its contents.
func (k *task) saveCache(ctx context.Context, c features.ContainerFiles, name, target string, expires time.Time) error {
	artifact := CacheArtifactPrefix + name + ".tar"
	if c == nil {
		return fmt.Errorf("dockerSave: %s: the stopped container cannot be read", artifact)
	}
	k.logf("Saving cache %s (%s) as %s", name, target, artifact)
	err := k.upload(ctx, artifact, expires, func(w io.Writer) error {
		stream, isDir, err := c.CopyFrom(ctx, target)
		if err != nil {
			return err
		}
		defer stream.Close()
		if !isDir {
			return fmt.Errorf("%s is not a directory", target)
		}
		return rebase(w, stream, path.Base(path.Clean(target)))
	})
	if err != nil {
		return fmt.Errorf("dockerSave: %s: %w", artifact, err)
	}
	return nil
}

// upload writes the content fill produces gzip-compressed to a temporary
// file, then uploads the file (re-read for each retry) with the sha256 of
// the uncompressed content.
func (k *task) upload(ctx context.Context, name string, expires time.Time, fill func(io.Writer) error) error {
	f, err := os.CreateTemp(k.cfg.TempDir, "docker-save-*.tar.gz")
	if err != nil {
		return fmt.Errorf("temporary file: %w", err)
	}
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	sum := sha256.New()
	zw := gzip.NewWriter(f)
	if err := fill(io.MultiWriter(zw, sum)); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("compress: %w", err)
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return fmt.Errorf("temporary file: %w", err)
	}
	return k.t.Artifacts().Upload(ctx, features.Upload{
		Name:            name,
		ContentType:     ContentType,
		ContentEncoding: "gzip",
		Expires:         expires,
		Size:            size,
		SHA256:          hexSum(sum),
		Open: func(context.Context) (io.ReadCloser, error) {
			return os.Open(f.Name())
		},
	})
}

func hexSum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

// rebase copies the tar stream src, whose entries all sit below root (as
// Docker's archive API names a directory), to w with root stripped, so
// that the directory's contents are at the archive's root.
func rebase(w io.Writer, src io.Reader, root string) error {
	tr := tar.NewReader(src)
	tw := tar.NewWriter(w)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read the cache archive: %w", err)
		}
		name := strings.TrimPrefix(h.Name, "./")
		rel, ok := strings.CutPrefix(name, root+"/")
		if !ok || strings.Trim(rel, "/") == "" {
			continue // the root directory itself
		}
		h.Name = rel
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("write the cache archive: %w", err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return fmt.Errorf("copy %s: %w", rel, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("write the cache archive: %w", err)
	}
	return nil
}

// removeImage removes the committed image, also when ctx is done.
func (k *task) removeImage(ctx context.Context) {
	if !k.committed {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), removeTimeout)
	defer cancel()
	if err := k.cfg.Docker.RemoveImage(ctx, k.ref); err != nil {
		k.t.Logger().Warn("dockerSave: remove the committed image", "image", k.ref, "error", err)
		return
	}
	k.committed = false
}

// Cleanup implements features.Cleaner: the committed image is removed if
// Exited could not remove it. It is idempotent.
func (k *task) Cleanup(ctx context.Context) error {
	if !k.committed {
		return nil
	}
	k.removeImage(ctx)
	if k.committed {
		return fmt.Errorf("dockerSave: the committed image %s could not be removed", k.ref)
	}
	return nil
}

func (k *task) logf(format string, args ...any) {
	_, _ = io.WriteString(k.t.Log(), tasklog.InfoLine(k.cfg.Now(), fmt.Sprintf(format, args...)))
}
