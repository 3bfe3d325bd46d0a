package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/schemas"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/tasklog"
)

// Queue is how the feature reaches Taskcluster for artifact images.
type Queue interface {
	// FindTask returns the ID of the task indexed at namespace, asked with
	// creds restricted to scopes (the task's own scopes).
	FindTask(ctx context.Context, creds features.Credentials, scopes []string, namespace string) (string, error)
	// OpenArtifact starts downloading the artifact name of the latest run
	// of taskID, signed with creds (nil: unsigned), following redirects. The
	// body is as stored (a Content-Encoding is not decoded); the caller
	// closes it. It tries once; errors that retrying cannot mend (the
	// artifact or task does not exist, the request is not authorized) are
	// marked with [Final].
	OpenArtifact(ctx context.Context, creds *features.Credentials, taskID, name string) (*Download, error)
}

// Download is an artifact download in progress.
type Download struct {
	Body io.ReadCloser
	// ContentEncoding is the response's Content-Encoding ("" or "gzip").
	ContentEncoding string
	// Size is the body's length as sent (Content-Length), -1 if unknown.
	Size int64
}

// ErrNoRetry marks download errors that are final (HTTP 4xx answers such
// as 404 and 401); see [Final].
var ErrNoRetry = errors.New("final error, not retried")

// Final marks err as final: it satisfies errors.Is(err, ErrNoRetry) and
// reads as err.
func Final(err error) error { return finalError{err} }

type finalError struct{ err error }

func (e finalError) Error() string        { return e.err.Error() }
func (e finalError) Unwrap() error        { return e.err }
func (e finalError) Is(target error) bool { return target == ErrNoRetry }

// ArtifactRepository is the Docker repository under which artifact images
// are loaded; each (taskId, path) has one below it.
const ArtifactRepository = "docker-worker/task-image"

// ArtifactRepo is the Docker repository of the image loaded from the
// artifact path of taskID: the same pair always gives the same name. The
// image is tagged "latest" and "sha256-<hex of the artifact>" there.
func ArtifactRepo(taskID, path string) string {
	sum := sha256.Sum256([]byte(taskID + "\x00" + path))
	return ArtifactRepository + "/" + hex.EncodeToString(sum[:16])
}

// hashTagPrefix starts the tag recording the artifact's sha256 beside
// "latest".
const hashTagPrefix = "sha256-"

// source is one artifact image to provide.
type source struct {
	taskID, path string
	format       format
	repo         string
}

// ref is the reference the artifact's image is loaded as.
func (s source) ref() string { return s.repo + ":latest" }

// artifactImage provides a task or indexed image.
func (k *task) artifactImage(ctx context.Context, img schemas.Image) (features.Image, error) {
	log := k.t.Log()
	if k.f.cfg.Queue == nil {
		return features.Image{}, errors.New("this worker has no queue to download image artifacts from")
	}
	f, err := formatOf(img.Path)
	if err != nil {
		io.WriteString(log, tasklog.ErrorLine(err.Error()))
		return features.Image{}, fmt.Errorf("image artifact %q: %w", img.Path, err)
	}
	taskID := img.TaskID
	name := "task-image " + img.TaskID + " " + img.Path
	if img.Type == schemas.ImageTypeIndexedImage {
		name = "indexed-image " + img.Namespace + " " + img.Path
		id, err := k.f.cfg.Queue.FindTask(ctx, k.t.Credentials(), k.t.Scopes(), img.Namespace)
		if err != nil {
			if ctx.Err() == nil {
				io.WriteString(log, tasklog.ErrorLine(fmt.Sprintf("Could not find a task associated with %q namespace. %v", img.Namespace, err)))
			}
			return features.Image{}, fmt.Errorf("find the task indexed at %q: %w", img.Namespace, err)
		}
		info(log, "Index namespace %q is task %s", img.Namespace, id)
		taskID = id
	}
	src := source{taskID: taskID, path: img.Path, format: f, repo: ArtifactRepo(taskID, img.Path)}
	wait := fmt.Sprintf("Waiting for the download of %q from task %s already in progress", img.Path, taskID)
	var ours atomic.Bool // this run started the load (others only wait)
	res, err := k.f.loads.Do(ctx, src.ref(), log, tasklog.InfoLine(time.Now(), wait), func(ctx context.Context, c *call) (loaded, error) {
		ours.Store(true)
		return k.ensure(ctx, src, c)
	})
	if err != nil {
		k.failed(ctx, err)
		return features.Image{}, fmt.Errorf("image artifact %q of task %s: %w", img.Path, taskID, err)
	}
	info(log, "Image '%s' from task '%s' loaded.  Using image ID %s.", img.Path, taskID, res.id)
	out, err := k.image(ctx, res.id, name, res.sha256)
	kind := features.ImageTaskImage
	if img.Type == schemas.ImageTypeIndexedImage {
		kind = features.ImageIndexedImage
	}
	out.Fetch = features.ImageFetch{Kind: kind, Cached: res.cached, Shared: !ours.Load(), Bytes: res.bytes}
	return out, err
}

// ensure finds the artifact's image in Docker or loads it, retrying
// downloads as the pull policy says.
func (k *task) ensure(ctx context.Context, src source, c *call) (loaded, error) {
	if res, ok := k.cached(ctx, src); ok {
		res.cached = true
		return res, nil
	}
	p := k.f.cfg.Policy
	attempts := max(p.Attempts, 1)
	for n := 1; ; n++ {
		if n > 1 {
			callf(c, "Downloading artifact %q from task ID: %s (attempt %d of %d).", src.path, src.taskID, n, attempts)
		} else {
			callf(c, "Downloading artifact %q from task ID: %s.", src.path, src.taskID)
		}
		res, err := k.loadOnce(ctx, src, c)
		if err == nil {
			return res, nil
		}
		switch {
		case ctx.Err() != nil:
			return loaded{}, err
		case errors.Is(err, ErrNoRetry), errors.Is(err, docker.ErrNotOneImage), errors.Is(err, docker.ErrUnknownArchiveFormat):
			return loaded{}, err
		case n >= attempts:
			return loaded{}, fmt.Errorf("failed after %d attempts: %w", attempts, err)
		}
		d := retryDelay(p, n)
		callf(c, "Download of artifact %q failed: %v; retrying in %s", src.path, err, d.Round(time.Millisecond))
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return loaded{}, errors.Join(err, context.Cause(ctx))
		}
	}
}

// retryDelay is the pull policy's wait before attempt n+1:
// 2^(n-1) × BaseDelay, scaled by a random factor within ±Randomization.
func retryDelay(p docker.PullPolicy, n int) time.Duration {
	d := float64(p.BaseDelay) * math.Pow(2, float64(n-1))
	if r := min(max(p.Randomization, 0), 1); r > 0 {
		d *= 1 - r + 2*r*rand.Float64()
	}
	return time.Duration(min(d, float64(math.MaxInt64/2)))
}

// cached finds an image loaded earlier from the same artifact: the
// "latest" tag of its repository and a sha256 tag on the same image. Any
// doubt (an error, a missing hash tag) means "not cached".
func (k *task) cached(ctx context.Context, src source) (loaded, bool) {
	d := k.f.cfg.Docker
	tags, err := d.ListTags(ctx, src.repo)
	if err != nil {
		k.t.Logger().Debug("list image tags", "repository", src.repo, "error", err)
		return loaded{}, false
	}
	var sums []string
	latest := false
	for _, t := range tags {
		t = strings.TrimPrefix(t, src.repo+":")
		switch {
		case t == "latest":
			latest = true
		case strings.HasPrefix(t, hashTagPrefix):
			sums = append(sums, strings.TrimPrefix(t, hashTagPrefix))
		}
	}
	if !latest || len(sums) == 0 {
		return loaded{}, false
	}
	img, err := d.InspectImage(ctx, src.ref())
	if err != nil {
		return loaded{}, false
	}
	for _, sum := range sums {
		tagged, err := d.InspectImage(ctx, src.repo+":"+hashTagPrefix+sum)
		if err == nil && tagged.ID == img.ID {
			return loaded{id: img.ID, sha256: sum}, true
		}
	}
	return loaded{}, false
}

// errStalled cancels a download that made no progress for the stall
// timeout.
var errStalled = errors.New("the download made no progress")

// loadOnce streams the artifact into Docker: body, then (for a gzip
// Content-Encoding) gunzip, then the sha256 of the artifact, then the
// archive's decompressor, then docker load. Nothing touches the disk.
func (k *task) loadOnce(ctx context.Context, src source, c *call) (loaded, error) {
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var creds *features.Credentials
	if !publicPath.MatchString(src.path) {
		cr := k.t.Credentials()
		creds = &cr
	}
	dl, err := k.f.cfg.Queue.OpenArtifact(actx, creds, src.taskID, src.path)
	if err != nil {
		return loaded{}, fmt.Errorf("download: %w", err)
	}
	defer dl.Body.Close()

	raw := &meter{r: dl.Body}
	if st := k.f.cfg.Policy.StallTimeout; st > 0 {
		timer := time.AfterFunc(st, func() { cancel(fmt.Errorf("%w for %s", errStalled, st)) })
		defer timer.Stop()
		raw.onRead = func() { timer.Reset(st) }
	}
	stopProgress := k.progress(c, raw, dl.Size)
	defer stopProgress()
	started := time.Now()

	var body io.Reader = raw
	if strings.EqualFold(strings.TrimSpace(dl.ContentEncoding), "gzip") {
		zr, err := gzip.NewReader(raw)
		if err != nil {
			return loaded{}, k.cause(actx, raw.decodeErr(fmt.Errorf("download: Content-Encoding gzip: %w", err)))
		}
		defer zr.Close()
		body = zr
	}
	h := sha256.New()
	hashed := io.TeeReader(body, h)
	archive, closeArchive, err := decompress(src.format, hashed)
	if err != nil {
		return loaded{}, k.cause(actx, raw.decodeErr(err))
	}
	defer closeArchive()
	out := &decoded{r: archive, raw: raw}

	id, err := k.f.cfg.Docker.LoadImage(actx, out, src.ref())
	if err != nil {
		cause := k.cause(actx, err)
		cancel(err) // unblocks a read the Docker client may still be making
		if derr := out.close(); derr != nil {
			// The artifact is not what its name says: retrying cannot help.
			return loaded{}, Final(fmt.Errorf("%s: %w", formatNames[src.format], derr))
		}
		return loaded{}, cause
	}
	out.close() // the Docker client reads no more; the rest is ours
	// What the decompressor left unread (padding, a trailing frame) is
	// still part of the artifact and of its hash.
	if _, err := io.Copy(io.Discard, hashed); err != nil {
		return loaded{}, k.cause(actx, fmt.Errorf("download: %w", err))
	}
	if got := raw.n.Load(); dl.Size >= 0 && got != dl.Size {
		return loaded{}, fmt.Errorf("Expected response size is '%d' but received '%d'", dl.Size, got)
	}
	sum := hexSum(h)
	if err := k.f.cfg.Docker.TagImage(ctx, id, src.repo+":"+hashTagPrefix+sum); err != nil {
		return loaded{}, fmt.Errorf("tag the loaded image: %w", err)
	}
	callf(c, "Downloaded and loaded %s in %.3f seconds (artifact sha256 %s)", mib(raw.n.Load()), time.Since(started).Seconds(), sum)
	return loaded{id: id, sha256: sum, bytes: raw.n.Load()}, nil
}

// cause prefers the reason the attempt's context was cancelled (a stall)
// over the error it caused.
func (k *task) cause(ctx context.Context, err error) error {
	if c := context.Cause(ctx); c != nil && errors.Is(c, errStalled) {
		return c
	}
	return err
}

// progress writes the download's progress to the task logs every
// ProgressInterval until the returned function is called.
func (k *task) progress(c *call, m *meter, size int64) func() {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(k.f.cfg.ProgressInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				n := m.n.Load()
				if size > 0 {
					callf(c, "Download progress: %s of %s (%.0f%%)", mib(n), mib(size), 100*float64(n)/float64(size))
				} else {
					callf(c, "Download progress: %s", mib(n))
				}
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}

func mib(n int64) string { return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20)) }

func hexSum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

// meter counts the bytes read through it, reports reads that made
// progress and remembers the last read error.
type meter struct {
	r      io.Reader
	n      atomic.Int64
	onRead func()
	err    atomic.Pointer[error]
}

func (m *meter) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	if n > 0 {
		m.n.Add(int64(n))
		if m.onRead != nil {
			m.onRead()
		}
	}
	if err != nil && err != io.EOF {
		m.err.Store(&err)
	}
	return n, err
}

// decodeErr marks err as a decoding error (final) unless reading the
// download failed.
func (m *meter) decodeErr(err error) error {
	if m.err.Load() != nil {
		return err
	}
	return Final(err)
}

// decoded is the decompressed archive as Docker reads it. It records a
// decoding error (one that is not the download's own), and once closed it
// reads nothing more: the Docker client may go on reading from another
// goroutine after LoadImage returned.
type decoded struct {
	mu     sync.Mutex
	r      io.Reader
	raw    *meter
	err    error
	closed bool
}

var errLoadEnded = errors.New("the load has ended")

func (d *decoded) Read(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0, errLoadEnded
	}
	n, err := d.r.Read(p)
	if err != nil && err != io.EOF && d.raw.err.Load() == nil && d.err == nil {
		d.err = err
	}
	return n, err
}

// close ends reading and returns the decoding error, if any.
func (d *decoded) close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	return d.err
}
