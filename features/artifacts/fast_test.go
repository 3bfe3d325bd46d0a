package artifacts

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/features/featuretest"
	"go.dockerworker.dev/docker-worker/schemas"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"golang.org/x/sys/unix"
)

// fakeLayers describes a container whose layers are directories of the
// test (no Docker needed; mounting the overlay needs root).
type fakeLayers struct {
	info docker.ContainerLayers
}

func (f fakeLayers) InspectLayers(context.Context, string) (docker.ContainerLayers, error) {
	return f.info, nil
}

// countingContainer counts the archive API calls.
type countingContainer struct {
	*featuretest.Container
	calls atomic.Int32
	mu    sync.Mutex
	paths []string
}

func (c *countingContainer) CopyFrom(ctx context.Context, p string) (io.ReadCloser, bool, error) {
	c.calls.Add(1)
	c.mu.Lock()
	c.paths = append(c.paths, p)
	c.mu.Unlock()
	return c.Container.CopyFrom(ctx, p)
}

// writeTree writes the container's files, directories and symlinks below
// dir: its single image layer.
func writeTree(t *testing.T, dir string, c *featuretest.Container) {
	t.Helper()
	mk := func(p string) {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for p, body := range c.Files {
		mk(filepath.Dir(filepath.Join(dir, p)))
		if err := os.WriteFile(filepath.Join(dir, p), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range c.Dirs {
		mk(filepath.Join(dir, p))
	}
	for p, target := range c.Symlinks {
		mk(filepath.Dir(filepath.Join(dir, p)))
		if err := os.Symlink(target, filepath.Join(dir, p)); err != nil {
			t.Fatal(err)
		}
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("reading artifacts from layers needs root, and CI runs as root")
	}
	t.Skip("reading artifacts from layers needs root")
}

// The same payload gives the same artifacts, hashes, error artifacts and
// error lines read from the layers as through the archive API, and the
// archive API is asked only for what is not in the layers (a missing path,
// a final symlink, a path on a mount point).
func TestLayersMatchArchive(t *testing.T) {
	requireRoot(t)
	c := &featuretest.Container{
		WorkDir: "/home/worker",
		Files: map[string]string{
			"/xfoo.txt":                "xfoo\n",
			"/image.dmg":               "not compressed",
			"/test.html":               strings.Repeat("<p>1mb</p>", 1000),
			"/binary":                  "\x00\x01\x02",
			"/home/worker/rel.txt":     "relative\n",
			"/etc/passwd":              "in the container\n",
			"/xfoo/test.html":          "<html>",
			"/xfoo/wow/bar.txt":        "bar",
			"/xfoo/wow/another.txt":    strings.Repeat("x", 100000),
			"/cache/on-the-volume.txt": "volume\n",
		},
		Symlinks: map[string]string{
			"/xfoo/link": "/etc/passwd", "/xfoo/wow/dirlink": "/",
			"/abs": "/etc", "/rel": "../../../../etc", "/final": "/etc/passwd",
		},
		Dirs: []string{"/xfoo/empty", "/home/worker/cache"},
	}
	arts := map[string]schemas.Artifact{
		"public/xfoo.txt":  {Type: "file", Path: "/xfoo.txt"},
		"public/image.dmg": {Type: "file", Path: "/image.dmg"},
		"public/test.html": {Type: "file", Path: "/test.html"},
		"public/binary":    {Type: "file", Path: "/binary"},
		"public/rel.txt":   {Type: "file", Path: "rel.txt"},
		"public/dir":       {Type: "directory", Path: "/xfoo/"},
		"public/final":     {Type: "file", Path: "/final"},
		"public/missing":   {Type: "file", Path: "/missing.txt"},
		"public/etc":       {Type: "file", Path: "/etc"},
		"public/asdir":     {Type: "directory", Path: "/xfoo.txt"},
		"public/volume":    {Type: "file", Path: "/cache/on-the-volume.txt"},
		"public/home":      {Type: "directory", Path: "/home"}, // a mount point below it
	}
	base := t.TempDir()
	lower, upper := filepath.Join(base, "lower"), filepath.Join(base, "upper")
	writeTree(t, lower, c)
	// The container deleted a file of its image: a whiteout in its layer.
	if err := os.MkdirAll(upper, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(upper, "deleted.txt"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(lower, "deleted.txt"), []byte("gone"), 0o644); err != nil {
		t.Fatal(err)
	}
	arts["public/deleted"] = schemas.Artifact{Type: "file", Path: "/deleted.txt"}
	archive := &countingContainer{Container: c}
	// The archive side does not know the deleted file either.
	want, err := exitedIn(t, Config{}, arts, archive)
	if err != nil {
		t.Fatal(err)
	}

	layers := fakeLayers{docker.ContainerLayers{Driver: "overlay2", Layers: []string{upper, lower},
		WorkingDir: "/home/worker", MountPoints: []string{"/cache", "/etc/hosts", "/home/worker/cache"}}}
	fast := &countingContainer{Container: c}
	got, err := exitedIn(t, Config{Layers: layers}, arts, fast)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want.Pub.Artifacts, got.Pub.Artifacts); diff != "" {
		t.Errorf("artifacts from the layers differ from the archive API's (-archive +layers):\n%s", diff)
	}
	if diff := cmp.Diff(errorLines(want.LogText()), errorLines(got.LogText())); diff != "" {
		t.Errorf("error lines differ (-archive +layers):\n%s", diff)
	}
	// The archive API only for the final symlink, the missing and the
	// deleted paths, the path on a mount point and the directory with one
	// below it.
	if n := fast.calls.Load(); n != 5 {
		t.Errorf("%d archive API calls with the layers (%v), want 5 (of %d without)", n, fast.paths, archive.calls.Load())
	}
}

// exitedIn is exited with a container ID, which the layers need.
func exitedIn(t *testing.T, cfg Config, arts map[string]schemas.Artifact, c features.ContainerFiles) (*featuretest.Task, error) {
	t.Helper()
	ft := &featuretest.Task{Pay: &schemas.Payload{Artifacts: arts}, Expiry: taskExpiry}
	cfg.TempDir = t.TempDir()
	tf, err := New(cfg).NewTask(ft)
	if err != nil {
		t.Fatal(err)
	}
	err = tf.(features.Exiter).Exited(t.Context(), &features.ExitedRequest{ContainerID: "c1", Container: c})
	if left, _ := filepath.Glob(filepath.Join(cfg.TempDir, "*")); len(left) != 0 {
		t.Errorf("spool files left behind: %v", left)
	}
	return ft, err
}

// errorLines are the log's error lines, sorted (uploads run in parallel).
func errorLines(log string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "[taskcluster:error]") || strings.Contains(l, "not found at") {
			// The info line carries a time stamp before the message.
			if i := strings.Index(l, "Artifact "); i >= 0 && strings.Contains(l, "not found at") {
				l = l[i:]
			}
			out = append(out, l)
		}
	}
	sort.Strings(out)
	return out
}
