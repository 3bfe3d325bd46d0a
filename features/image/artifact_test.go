package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/features/featuretest"
	"go.dockerworker.dev/docker-worker/schemas"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockerfake"
	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
)

// stored is an artifact as the fake queue stores it.
type stored struct {
	body     []byte
	encoding string // Content-Encoding
	size     int64  // announced length; 0: len(body)
}

type openCall struct {
	creds        *features.Credentials
	taskID, name string
}

// fakeQueue serves artifacts and index entries from memory and records
// every call.
type fakeQueue struct {
	mu    sync.Mutex
	arts  map[string]stored // by taskID + "/" + name
	index map[string]string // task ID by namespace
	opens []openCall
	finds [][]string // scopes of each FindTask call
	// openErr, when set, is asked before each OpenArtifact (n from 1).
	openErr func(n int) error
	// gate, when set, holds every body's first read until it is closed.
	gate chan struct{}
	// stall makes bodies block until the download's context ends.
	stall bool
}

func (q *fakeQueue) put(taskID, name string, a stored) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.arts == nil {
		q.arts = map[string]stored{}
	}
	q.arts[taskID+"/"+name] = a
}

func (q *fakeQueue) FindTask(_ context.Context, _ features.Credentials, scopes []string, ns string) (string, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.finds = append(q.finds, scopes)
	id, ok := q.index[ns]
	if !ok {
		return "", Final(errors.New("404 ResourceNotFound: Indexed task not found"))
	}
	return id, nil
}

func (q *fakeQueue) OpenArtifact(ctx context.Context, creds *features.Credentials, taskID, name string) (*Download, error) {
	q.mu.Lock()
	q.opens = append(q.opens, openCall{creds: creds, taskID: taskID, name: name})
	n := len(q.opens)
	a, ok := q.arts[taskID+"/"+name]
	q.mu.Unlock()
	if q.openErr != nil {
		if err := q.openErr(n); err != nil {
			return nil, err
		}
	}
	if !ok {
		return nil, Final(fmt.Errorf("GET %s/%s: 404 ResourceNotFound", taskID, name))
	}
	size := a.size
	if size == 0 {
		size = int64(len(a.body))
	}
	return &Download{Body: &body{ctx: ctx, r: bytes.NewReader(a.body), gate: q.gate, stall: q.stall},
		ContentEncoding: a.encoding, Size: size}, nil
}

func (q *fakeQueue) openCount() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.opens)
}

// body is a download body honouring its context, as an HTTP body does.
type body struct {
	ctx   context.Context
	r     io.Reader
	gate  chan struct{}
	stall bool
}

func (b *body) Read(p []byte) (int, error) {
	if b.stall {
		<-b.ctx.Done()
		return 0, b.ctx.Err()
	}
	if b.gate != nil {
		select {
		case <-b.gate:
		case <-b.ctx.Done():
			return 0, b.ctx.Err()
		}
	}
	if err := b.ctx.Err(); err != nil {
		return 0, err
	}
	return b.r.Read(p)
}

func (b *body) Close() error { return nil }

// testArchive is a one-image docker save archive and its image ID.
func testArchive(t *testing.T, cmd ...string) ([]byte, string) {
	t.Helper()
	raw := dockerfake.ImageArchive("some/name:tag", docker.ImageConfig{Cmd: cmd, Env: []string{"A=b"}})
	id, err := (&dockerfake.Fake{}).LoadImage(t.Context(), bytes.NewReader(raw), "probe:latest")
	if err != nil {
		t.Fatal(err)
	}
	return raw, id
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

const (
	imageTask = "fXq9Yh4sRfOQS1w3i2o5Aw"
	runTask   = "dSlITZ4yQgmvxxAi4A8fHQ"
)

func taskImage(taskID, path string, scopes ...string) *featuretest.Task {
	return &featuretest.Task{ID: runTask, Scope: scopes,
		Creds: features.Credentials{ClientID: "task-client/" + runTask + "/0", AccessToken: "temp-token", Certificate: "{}"},
		Pay:   &schemas.Payload{Image: schemas.Image{Type: schemas.ImageTypeTaskImage, TaskID: taskID, Path: path}}}
}

func newArtifactFeature(d Docker, q Queue, attempts int) *Feature {
	return New(Config{Docker: d, Queue: q, Policy: docker.PullPolicy{Attempts: attempts, BaseDelay: time.Millisecond}})
}

// Every archive format is decoded on the way into Docker; the hash is the
// artifact's, after the transfer's Content-Encoding is undone.
func TestArtifactFormats(t *testing.T) {
	archive, id := testArchive(t, "echo", "hi")
	for _, tc := range []struct {
		name, path string
		art        stored
		hashOf     []byte
	}{
		{"tar", "public/image.tar", stored{body: archive}, archive},
		{"tar sent gzip-encoded", "public/image.tar", stored{body: featuretest.Gzip(archive), encoding: "gzip"}, archive},
		{"tar.gz", "public/image.tar.gz", stored{body: featuretest.Gzip(archive)}, featuretest.Gzip(archive)},
		{"tgz", "public/image.tgz", stored{body: featuretest.Gzip(archive)}, featuretest.Gzip(archive)},
		{"tar.lz4", "public/image.tar.lz4", stored{body: featuretest.LZ4(archive)}, featuretest.LZ4(archive)},
		{"tar.zst", "public/image.tar.zst", stored{body: featuretest.Zstd(archive)}, featuretest.Zstd(archive)},
		{"tar.zst sent gzip-encoded", "public/image.tar.zst", stored{body: featuretest.Gzip(featuretest.Zstd(archive)), encoding: "gzip"}, featuretest.Zstd(archive)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, q := newDocker(), &fakeQueue{}
			q.put(imageTask, tc.path, tc.art)
			ft := taskImage(imageTask, tc.path)
			img, err := provide(t, newArtifactFeature(d, q, 1), ft)
			if err != nil {
				t.Fatal(err)
			}
			want := features.Image{ID: id, Name: "task-image " + imageTask + " " + tc.path, ArtifactSHA256: sum(tc.hashOf),
				Config: features.ImageConfig{Cmd: []string{"echo", "hi"}, Env: []string{"A=b"}},
				// The bytes read from the queue, as sent.
				Fetch: features.ImageFetch{Kind: features.ImageTaskImage, Bytes: int64(len(tc.art.body))}}
			if diff := cmp.Diff(want, img); diff != "" {
				t.Errorf("image (-want +got):\n%s", diff)
			}
			repo := ArtifactRepo(imageTask, tc.path)
			if got, want := d.Loads(), []string{repo + ":latest"}; !cmp.Equal(got, want) {
				t.Errorf("loads %v, want %v", got, want)
			}
			tags, _ := d.ListTags(t.Context(), repo)
			if want := []string{repo + ":latest", repo + ":sha256-" + sum(tc.hashOf)}; !cmp.Equal(tags, want) {
				t.Errorf("tags %v, want %v", tags, want)
			}
			logHas(t, ft, `Downloading artifact "`+tc.path+`" from task ID: `+imageTask+".",
				"Image '"+tc.path+"' from task '"+imageTask+"' loaded.  Using image ID "+id+".")
		})
	}
}

func TestArtifactRef(t *testing.T) {
	a, b := ArtifactRepo("T1", "public/image.tar"), ArtifactRepo("T1", "public/image.tar")
	if a != b || a == ArtifactRepo("T2", "public/image.tar") || a == ArtifactRepo("T1", "public/other.tar") ||
		ArtifactRepo("T1a", "b") == ArtifactRepo("T1", "ab") {
		t.Errorf("references are not one per (taskId, path): %s", a)
	}
	if !strings.HasPrefix(a, "docker-worker/task-image/") || len(a) != len("docker-worker/task-image/")+32 {
		t.Errorf("reference %q", a)
	}
}

// Artifacts that cannot be an image fail the task without retries.
func TestBadArtifacts(t *testing.T) {
	archive, _ := testArchive(t, "true")
	two := dockerfake.ImageArchive("", docker.ImageConfig{Cmd: []string{"a"}}, docker.ImageConfig{Cmd: []string{"b"}})
	for _, tc := range []struct {
		name, path string
		art        *stored
		wantErr    error
		wantLog    string
		wantOpens  int
	}{
		{"unknown extension", "public/image.zip", &stored{body: archive}, ErrUnsupportedFormat,
			"Unsupported image file format. Expected tarball with extension: .tar.zst, .tar.lz4, .tar.gz, .tgz or .tar", 0},
		{"two images", "public/image.tar", &stored{body: two}, docker.ErrNotOneImage, "Image tarballs must only contain one image", 1},
		{"not an archive", "public/image.tar", &stored{body: []byte("hello")}, docker.ErrUnknownArchiveFormat, "Unknown docker archive format", 1},
		{"not zstd", "public/image.tar.zst", &stored{body: archive}, ErrNoRetry, "zstd:", 1},
		{"not lz4", "public/image.tar.lz4", &stored{body: archive}, ErrNoRetry, "lz4:", 1},
		{"not gzip", "public/image.tar.gz", &stored{body: archive}, ErrNoRetry, "gzip:", 1},
		{"bad Content-Encoding", "public/image.tar", &stored{body: archive, encoding: "gzip"}, ErrNoRetry, "Content-Encoding gzip", 1},
		{"missing artifact", "public/image.tar", nil, ErrNoRetry, "404 ResourceNotFound", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, q := newDocker(), &fakeQueue{}
			if tc.art != nil {
				q.put(imageTask, tc.path, *tc.art)
			}
			ft := taskImage(imageTask, tc.path)
			_, err := provide(t, newArtifactFeature(d, q, 3), ft)
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v, want %v", err, tc.wantErr)
			}
			if n := q.openCount(); n != tc.wantOpens {
				t.Errorf("%d downloads, want %d", n, tc.wantOpens)
			}
			logHas(t, ft, "[taskcluster:error] ", tc.wantLog)
		})
	}
}

// A short body is an error (retried), and a transient failure is retried.
func TestDownloadRetries(t *testing.T) {
	archive, id := testArchive(t, "true")
	d, q := newDocker(), &fakeQueue{}
	q.put(imageTask, "public/image.tar", stored{body: archive})
	q.openErr = func(n int) error {
		if n == 1 {
			return errors.New("GET ...: 502 Bad Gateway")
		}
		return nil
	}
	ft := taskImage(imageTask, "public/image.tar")
	img, err := provide(t, newArtifactFeature(d, q, 3), ft)
	if err != nil || img.ID != id {
		t.Fatalf("image %+v, error %v", img, err)
	}
	if n := q.openCount(); n != 2 {
		t.Errorf("%d downloads, want 2", n)
	}
	logHas(t, ft, `Download of artifact "public/image.tar" failed: download: GET ...: 502 Bad Gateway; retrying in`,
		`Downloading artifact "public/image.tar" from task ID: `+imageTask+" (attempt 2 of 3).")

	d, q = newDocker(), &fakeQueue{}
	q.put(imageTask, "public/image.tar", stored{body: archive, size: int64(len(archive)) + 10})
	ft = taskImage(imageTask, "public/image.tar")
	_, err = provide(t, newArtifactFeature(d, q, 2), ft)
	want := fmt.Sprintf("Expected response size is '%d' but received '%d'", len(archive)+10, len(archive))
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "failed after 2 attempts") {
		t.Errorf("error %v, want %q after 2 attempts", err, want)
	}
}

// Public artifacts are fetched unsigned, private ones with the run's
// temporary credentials.
func TestArtifactCredentials(t *testing.T) {
	archive, _ := testArchive(t, "true")
	d, q := newDocker(), &fakeQueue{}
	q.put(imageTask, "public/image.tar", stored{body: archive})
	q.put(imageTask, "private/image.tar", stored{body: archive})
	f := newArtifactFeature(d, q, 1)
	pub := taskImage(imageTask, "public/image.tar")
	priv := taskImage(imageTask, "private/image.tar", "queue:get-artifact:private/image.tar")
	for _, ft := range []*featuretest.Task{pub, priv} {
		if _, err := provide(t, f, ft); err != nil {
			t.Fatal(err)
		}
	}
	want := []openCall{
		{taskID: imageTask, name: "public/image.tar"},
		{creds: &priv.Creds, taskID: imageTask, name: "private/image.tar"},
	}
	if diff := cmp.Diff(want, q.opens, cmp.AllowUnexported(openCall{})); diff != "" {
		t.Errorf("downloads (-want +got):\n%s", diff)
	}
	if strings.Contains(priv.LogText(), "temp-token") {
		t.Error("the access token reached the task log")
	}
}

// A second task, and a worker started afresh with the same Docker, load
// nothing: Docker's tags are the only state. Without its hash tag an
// image is loaded again.
func TestLoadedOnce(t *testing.T) {
	archive, id := testArchive(t, "true")
	d, q := newDocker(), &fakeQueue{}
	q.put(imageTask, "public/image.tar.zst", stored{body: featuretest.Zstd(archive)})
	path := "public/image.tar.zst"
	first, err := provide(t, newArtifactFeature(d, q, 1), taskImage(imageTask, path))
	if err != nil {
		t.Fatal(err)
	}
	f := newArtifactFeature(d, q, 1)
	for range 2 {
		ft := taskImage(imageTask, path)
		img, err := provide(t, f, ft)
		if err != nil {
			t.Fatal(err)
		}
		if img.ID != id || img.ArtifactSHA256 != first.ArtifactSHA256 {
			t.Errorf("image %+v, want ID %s and hash %s", img, id, first.ArtifactSHA256)
		}
		if want := (features.ImageFetch{Kind: features.ImageTaskImage, Cached: true}); img.Fetch != want {
			t.Errorf("fetch %+v, want %+v (found in Docker)", img.Fetch, want)
		}
		logHas(t, ft, "Image '"+path+"' from task '"+imageTask+"' loaded.  Using image ID "+id+".")
		if strings.Contains(ft.LogText(), "Downloading") {
			t.Errorf("downloaded again:\n%s", ft.LogText())
		}
	}
	if n, loads := q.openCount(), len(d.Loads()); n != 1 || loads != 1 {
		t.Errorf("%d downloads and %d loads, want 1 and 1", n, loads)
	}

	d.RemoveTag(ArtifactRepo(imageTask, path) + ":sha256-" + first.ArtifactSHA256)
	if _, err := provide(t, f, taskImage(imageTask, path)); err != nil {
		t.Fatal(err)
	}
	if n := q.openCount(); n != 2 {
		t.Errorf("%d downloads, want 2 (the image lost its hash tag)", n)
	}
}

// Tasks wanting the same artifact at the same time share one download,
// and each task log shows its progress.
func TestConcurrentTasksShareOneDownload(t *testing.T) {
	archive, id := testArchive(t, "true")
	d, q := newDocker(), &fakeQueue{gate: make(chan struct{})}
	q.put(imageTask, "public/image.tar", stored{body: archive})
	f := newArtifactFeature(d, q, 1)
	const n = 3
	fts := make([]*featuretest.Task, n)
	errs := make(chan error, n)
	var sharedFetches atomic.Int32
	for i := range fts {
		fts[i] = taskImage(imageTask, "public/image.tar")
		go func() {
			img, err := provide(t, f, fts[i])
			if err == nil && img.ID != id {
				err = fmt.Errorf("image ID %s, want %s", img.ID, id)
			}
			if err == nil && (img.Fetch.Bytes != int64(len(archive)) || img.Fetch.Cached) {
				err = fmt.Errorf("fetch %+v, want %d bytes, not cached", img.Fetch, len(archive))
			}
			if img.Fetch.Shared {
				sharedFetches.Add(1)
			}
			errs <- err
		}()
	}
	// Release the download once every task waits for it.
	key := ArtifactRepo(imageTask, "public/image.tar") + ":latest"
	for f.loads.Waiters(key) != n {
		time.Sleep(time.Millisecond)
	}
	close(q.gate)
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if got, loads := q.openCount(), len(d.Loads()); got != 1 || loads != 1 {
		t.Errorf("%d downloads and %d loads, want 1 and 1", got, loads)
	}
	shared := 0
	for _, ft := range fts {
		logHas(t, ft, "Downloaded and loaded", "Using image ID "+id)
		if strings.Contains(ft.LogText(), `Waiting for the download of "public/image.tar" from task `+imageTask+" already in progress") {
			shared++
		}
	}
	if shared != n-1 {
		t.Errorf("%d tasks joined the download, want %d", shared, n-1)
	}
	if got := sharedFetches.Load(); got != n-1 {
		t.Errorf("%d images say their fetch was shared, want %d", got, n-1)
	}
}

// A task that gives up leaves the shared download to the others; the
// download stops when the last one gives up.
func TestSharedDownloadOutlivesOneTask(t *testing.T) {
	archive, id := testArchive(t, "true")
	d, q := newDocker(), &fakeQueue{gate: make(chan struct{})}
	q.put(imageTask, "public/image.tar", stored{body: archive})
	f := newArtifactFeature(d, q, 1)
	ctx, cancel := context.WithCancel(t.Context())
	firstDone := make(chan error, 1)
	go func() {
		tf, _ := f.NewTask(taskImage(imageTask, "public/image.tar"))
		_, err := tf.(features.ImageProvider).ProvideImage(ctx, &features.ImageRequest{})
		firstDone <- err
	}()
	key := ArtifactRepo(imageTask, "public/image.tar") + ":latest"
	waiters := func() int { return f.loads.Waiters(key) }
	for waiters() != 1 {
		time.Sleep(time.Millisecond)
	}
	second := make(chan error, 1)
	go func() {
		img, err := provide(t, f, taskImage(imageTask, "public/image.tar"))
		if err == nil && img.ID != id {
			err = fmt.Errorf("image %s", img.ID)
		}
		second <- err
	}()
	for waiters() != 2 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-firstDone; !errors.Is(err, context.Canceled) {
		t.Errorf("first task: %v, want canceled", err)
	}
	close(q.gate)
	if err := <-second; err != nil {
		t.Errorf("second task: %v", err)
	}
	if n := q.openCount(); n != 1 {
		t.Errorf("%d downloads, want 1", n)
	}
}

// A download that makes no progress for the stall timeout is abandoned
// and retried.
func TestStalledDownload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, q := newDocker(), &fakeQueue{stall: true}
		archive, _ := testArchive(t, "true")
		q.put(imageTask, "public/image.tar", stored{body: archive})
		f := New(Config{Docker: d, Queue: q, Policy: docker.PullPolicy{Attempts: 2, BaseDelay: time.Second, StallTimeout: time.Minute}})
		ft := taskImage(imageTask, "public/image.tar")
		start := time.Now()
		_, err := provide(t, f, ft)
		if !errors.Is(err, errStalled) || !strings.Contains(err.Error(), "failed after 2 attempts") {
			t.Errorf("error %v", err)
		}
		if took := time.Since(start); took < 2*time.Minute || took > 2*time.Minute+3*time.Second {
			t.Errorf("gave up after %v", took)
		}
		logHas(t, ft, "Download progress: 0.00 MiB of", "the download made no progress for 1m0s; retrying in")
	})
}

func TestIndexedImage(t *testing.T) {
	archive, id := testArchive(t, "true")
	d, q := newDocker(), &fakeQueue{index: map[string]string{"garbage.docker-worker-tests.docker-images": imageTask}}
	q.put(imageTask, "public/image.tar", stored{body: archive})
	f := newArtifactFeature(d, q, 1)
	indexed := func(ns string) *featuretest.Task {
		return &featuretest.Task{ID: runTask, Scope: []string{"queue:route:x", "assume:y"},
			Pay: &schemas.Payload{Image: schemas.Image{Type: schemas.ImageTypeIndexedImage, Namespace: ns, Path: "public/image.tar"}}}
	}
	ft := indexed("garbage.docker-worker-tests.docker-images")
	img, err := provide(t, f, ft)
	if err != nil {
		t.Fatal(err)
	}
	if img.ID != id || img.ArtifactSHA256 != sum(archive) || img.Name != "indexed-image garbage.docker-worker-tests.docker-images public/image.tar" ||
		img.Fetch.Kind != features.ImageIndexedImage {
		t.Errorf("image %+v", img)
	}
	logHas(t, ft, "Image 'public/image.tar' from task '"+imageTask+"' loaded.")
	// Resolved on every task, even when the image is loaded.
	if _, err := provide(t, f, indexed("garbage.docker-worker-tests.docker-images")); err != nil {
		t.Fatal(err)
	}
	if len(q.finds) != 2 || !cmp.Equal(q.finds[0], []string{"queue:route:x", "assume:y"}) {
		t.Errorf("findTask calls (their scopes): %v", q.finds)
	}
	// The image is the task image's: one download.
	if _, err := provide(t, f, taskImage(imageTask, "public/image.tar")); err != nil || q.openCount() != 1 {
		t.Errorf("task image of the indexed task: %v, %d downloads", err, q.openCount())
	}

	ft = indexed("no.such.namespace")
	if _, err := provide(t, f, ft); err == nil {
		t.Error("an unknown namespace gave an image")
	}
	logHas(t, ft, `[taskcluster:error] Could not find a task associated with "no.such.namespace" namespace. 404 ResourceNotFound`)
}

func TestNoQueue(t *testing.T) {
	_, err := provide(t, New(Config{Docker: newDocker()}), taskImage(imageTask, "public/image.tar"))
	if err == nil {
		t.Error("a task image without a queue")
	}
}

// The seam against the real daemon: an artifact image is loaded once, its
// tags are found again by a new feature (a restarted worker), and its
// configuration is the daemon's.
func TestRealDockerArtifactImage(t *testing.T) {
	dc := dockertest.Require(t)
	cfg, err := dc.InspectImage(t.Context(), dockertest.Image)
	if err != nil {
		t.Fatal(err)
	}
	// An archive made here: one empty layer and a configuration of its own.
	archive := dockerfake.ImageArchive("", docker.ImageConfig{Cmd: []string{"true"}, Env: []string{"FROM=artifact"}})
	taskID := "realDocker" + strings.ReplaceAll(t.Name(), "/", "-")
	path := "public/image.tar.zst"
	repo := ArtifactRepo(taskID, path)
	t.Cleanup(func() {
		tags, _ := dc.ListTags(context.Background(), repo)
		for _, ref := range tags {
			dc.RemoveImage(context.Background(), ref)
		}
	})
	q := &fakeQueue{}
	q.put(taskID, path, stored{body: featuretest.Zstd(archive)})
	for i := range 2 {
		ft := taskImage(taskID, path)
		img, err := provide(t, newArtifactFeature(dc, q, 1), ft)
		if err != nil {
			t.Fatalf("task %d: %v\n%s", i, err, ft.LogText())
		}
		if !strings.HasPrefix(img.ID, "sha256:") || img.ID == cfg.ID || img.ArtifactSHA256 != sum(featuretest.Zstd(archive)) ||
			!cmp.Equal(img.Config.Env, []string{"FROM=artifact"}) {
			t.Errorf("task %d: image %+v", i, img)
		}
	}
	if n := q.openCount(); n != 1 {
		t.Errorf("%d downloads, want 1", n)
	}
	tags, err := dc.ListTags(t.Context(), repo)
	if want := []string{repo + ":latest", repo + ":sha256-" + sum(featuretest.Zstd(archive))}; err != nil || !cmp.Equal(tags, want) {
		t.Errorf("tags %v (%v), want %v", tags, err, want)
	}
}
