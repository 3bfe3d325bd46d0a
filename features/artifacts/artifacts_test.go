package artifacts

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/features/featuretest"
	"go.dockerworker.dev/docker-worker/schemas"
)

var taskExpiry = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func exited(t *testing.T, cfg Config, arts map[string]schemas.Artifact, c *featuretest.Container) (*featuretest.Task, error) {
	t.Helper()
	ft := &featuretest.Task{Pay: &schemas.Payload{Artifacts: arts}, Expiry: taskExpiry}
	if cfg.TempDir == "" {
		cfg.TempDir = t.TempDir()
	}
	tf, err := New(cfg).NewTask(ft)
	if err != nil {
		t.Fatal(err)
	}
	err = tf.(features.Exiter).Exited(t.Context(), &features.ExitedRequest{Container: c})
	if left, _ := filepath.Glob(filepath.Join(cfg.TempDir, "*")); len(left) != 0 {
		t.Errorf("spool files left behind: %v", left)
	}
	return ft, err
}

func body(t *testing.T, a featuretest.Artifact) string {
	t.Helper()
	if a.ContentEncoding != "gzip" {
		return string(a.Body)
	}
	zr, err := gzip.NewReader(bytes.NewReader(a.Body))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestFileArtifacts(t *testing.T) {
	given := time.Date(2029, 5, 6, 7, 8, 9, 0, time.UTC)
	c := &featuretest.Container{Files: map[string]string{
		"/xfoo.txt":     "xfoo\n",
		"/image.dmg":    "not compressed",
		"/test.html":    strings.Repeat("<p>1mb</p>", 1000),
		"/binary":       "\x00\x01\x02",
		"/username.txt": "root\n",
	}}
	ft, err := exited(t, Config{}, map[string]schemas.Artifact{
		"public/xfoo.txt":     {Type: "file", Path: "/xfoo.txt", Expires: &given},
		"public/image.dmg":    {Type: "file", Path: "/image.dmg"},
		"public/test.html":    {Type: "file", Path: "/test.html"},
		"public/binary":       {Type: "file", Path: "/binary"},
		"public/username.txt": {Type: "file", Path: "username.txt"}, // relative: resolved in the container
	}, c)
	if err != nil {
		t.Fatal(err)
	}
	x, _ := ft.Pub.Get("public/xfoo.txt")
	if got := hex.EncodeToString(x.Body); got != "1f8b0800000000000003ab48cbcfe70200a7e6f65005000000" {
		t.Errorf("xfoo.txt bytes %s", got)
	}
	if x.ContentType != "text/plain" || x.ContentEncoding != "gzip" || !x.Expires.Equal(given) || x.SHA256 != sum("xfoo\n") {
		t.Errorf("xfoo.txt = %+v", x)
	}
	d, _ := ft.Pub.Get("public/image.dmg")
	if string(d.Body) != "not compressed" || d.ContentEncoding != "" || !d.Expires.Equal(taskExpiry) {
		t.Errorf("image.dmg = %+v", d)
	}
	h, _ := ft.Pub.Get("public/test.html")
	if h.ContentType != "text/html" || len(body(t, h)) != 10000 {
		t.Errorf("test.html = %s, %d bytes", h.ContentType, len(body(t, h)))
	}
	if b, _ := ft.Pub.Get("public/binary"); b.ContentType != "application/octet-stream" || body(t, b) != "\x00\x01\x02" {
		t.Errorf("binary = %+v", b)
	}
	if u, _ := ft.Pub.Get("public/username.txt"); body(t, u) != "root\n" {
		t.Errorf("username.txt = %q", body(t, u))
	}
	hashes := ft.ArtifactHashes()
	if len(hashes) != 5 || hashes["public/username.txt"] != sum("root\n") {
		t.Errorf("hashes %v", hashes)
	}
}

func TestDirectoryArtifact(t *testing.T) {
	big := strings.Repeat("x", 1000000)
	c := &featuretest.Container{
		Files: map[string]string{
			"/xfoo/test.html":       "<html>",
			"/xfoo/wow/bar.txt":     "bar",
			"/xfoo/wow/another.txt": big,
		},
		Symlinks: map[string]string{"/xfoo/link": "/etc/passwd", "/xfoo/wow/dirlink": "/"},
		Dirs:     []string{"/xfoo/empty"},
	}
	for _, name := range []string{"public/dir", "public/dir/"} {
		t.Run(name, func(t *testing.T) {
			ft, err := exited(t, Config{Parallelism: 2}, map[string]schemas.Artifact{name: {Type: "directory", Path: "/xfoo/"}}, c)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"public/dir/test.html", "public/dir/wow/another.txt", "public/dir/wow/bar.txt"}
			if diff := cmp.Diff(want, ft.Pub.Names()); diff != "" {
				t.Errorf("artifacts (-want +got):\n%s", diff)
			}
			a, _ := ft.Pub.Get("public/dir/wow/another.txt")
			if body(t, a) != big || a.SHA256 != sum(big) {
				t.Error("1,000,000-byte file not intact")
			}
		})
	}
}

func TestMissingAndMismatched(t *testing.T) {
	c := &featuretest.Container{Files: map[string]string{"/etc/hostname": "h", "/found.txt": "found"}}
	ft, err := exited(t, Config{}, map[string]schemas.Artifact{
		"public/my-missing.txt": {Type: "file", Path: "/this-file-is-missing.txt"},
		"public/etc":            {Type: "file", Path: "/etc"},
		"public/xfoo":           {Type: "directory", Path: "/found.txt"},
		"public/vol":            {Type: "volume", Path: "/etc"},
		"public/found.txt":      {Type: "file", Path: "/found.txt"},
	}, c)
	if err != nil {
		t.Fatalf("missing or mismatched artifacts failed the task: %v", err)
	}
	for name, reason := range map[string]string{
		"public/my-missing.txt": "file-missing-on-worker",
		"public/etc":            "invalid-resource-on-worker",
		"public/xfoo":           "invalid-resource-on-worker",
		"public/vol":            "invalid-resource-on-worker",
	} {
		a, _ := ft.Pub.Get(name)
		if a.Kind != "error" || a.Reason != reason || !a.Expires.Equal(taskExpiry) || a.Message == "" {
			t.Errorf("%s = %+v", name, a)
		}
	}
	if a, _ := ft.Pub.Get("public/found.txt"); a.Kind != "s3" {
		t.Errorf("found.txt = %+v", a)
	}
	log := ft.LogText()
	for _, want := range []string{
		`] Artifact "public/my-missing.txt" not found at "/this-file-is-missing.txt": Error response from daemon: Could not find the file`,
		"\n[taskcluster:error] Error uploading \"public/etc\". Expected artifact to be a \"file\" but was \"directory\"\n",
		`Error uploading "public/xfoo". Expected artifact to be a "directory" but was "file"`,
		`Error uploading "public/vol". Expected artifact to be a "volume" but was "directory"`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "[taskcluster:error] Artifact") {
		t.Error("the missing-artifact line is an error line; docker-worker wrote a plain one")
	}
}

func TestUploadFailureFailsTask(t *testing.T) {
	c := &featuretest.Container{Files: map[string]string{"/a.txt": "a", "/b.txt": "b"}}
	boom := errors.New("PUT answered 500 five times")
	ft := &featuretest.Task{Pay: &schemas.Payload{Artifacts: map[string]schemas.Artifact{
		"public/a.txt": {Type: "file", Path: "/a.txt"},
		"public/b.txt": {Type: "file", Path: "/b.txt"},
	}}, Expiry: taskExpiry}
	ft.Pub.FailUpload = func(name string) error {
		if name == "public/a.txt" {
			return boom
		}
		return nil
	}
	tf, _ := New(Config{TempDir: t.TempDir()}).NewTask(ft)
	err := tf.(features.Exiter).Exited(t.Context(), &features.ExitedRequest{Container: c})
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want the upload error", err)
	}
	if _, ok := ft.Pub.Get("public/b.txt"); !ok {
		t.Error("the other artifact was not uploaded")
	}
	log := ft.LogText()
	for _, want := range []string{
		`[taskcluster:error] Error uploading "public/a.txt" artifact. PUT answered 500 five times`,
		"[taskcluster:error] Encountered error when uploading artifact(s)",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

func hostileTar(t *testing.T, entries ...[2]string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		typ := byte(tar.TypeReg)
		if strings.HasSuffix(e[0], "/") {
			typ = tar.TypeDir
		}
		tw.WriteHeader(&tar.Header{Name: e[0], Typeflag: typ, Size: int64(len(e[1])), Mode: 0o644})
		io.WriteString(tw, e[1])
	}
	tw.Close()
	return b.Bytes()
}

// A container whose archive tries to escape with "../" entries: the
// artifact is rejected with an error artifact, nothing lands outside the
// spool directory, and the task is not failed.
func TestHostileArchive(t *testing.T) {
	outside := t.TempDir()
	if err := os.Mkdir(filepath.Join(outside, "spool"), 0o700); err != nil {
		t.Fatal(err)
	}
	c := &featuretest.Container{
		Archives: map[string][]byte{
			"/dir": hostileTar(t, [2]string{"dir/", ""}, [2]string{"dir/ok.txt", "ok"},
				[2]string{"dir/../../" + filepath.Base(outside) + "/pwned", "evil"}),
			"/abs":  hostileTar(t, [2]string{"abs/", ""}, [2]string{"/etc/cron.d/pwned", "evil"}),
			"/file": hostileTar(t, [2]string{"../pwned", "evil"}),
		},
		IsDir: map[string]bool{"/dir": true, "/abs": true},
	}
	ft, err := exited(t, Config{TempDir: filepath.Join(outside, "spool")}, map[string]schemas.Artifact{
		"public/dir":  {Type: "directory", Path: "/dir"},
		"public/abs":  {Type: "directory", Path: "/abs"},
		"public/file": {Type: "file", Path: "/file"},
	}, c)
	if err != nil {
		t.Fatalf("hostile archive failed the task: %v", err)
	}
	for _, name := range []string{"public/dir", "public/abs", "public/file"} {
		if a, _ := ft.Pub.Get(name); a.Kind != "error" || a.Reason != "invalid-resource-on-worker" || !strings.Contains(a.Message, "unsafe entry name") {
			t.Errorf("%s = %+v", name, a)
		}
	}
	for _, n := range ft.Pub.Names() {
		if strings.Contains(n, "pwned") {
			t.Errorf("hostile entry uploaded as %s", n)
		}
	}
	if _, err := os.Stat(filepath.Join(outside, "pwned")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a file was written outside the spool directory: %v", err)
	}
	if !strings.Contains(ft.LogText(), `[taskcluster:error] Error uploading "public/dir". The archive of the artifact could not be used`) {
		t.Errorf("log:\n%s", ft.LogText())
	}
}

// Uploads run in parallel, never more than the configured bound.
func TestParallelismBound(t *testing.T) {
	files := map[string]string{}
	arts := map[string]schemas.Artifact{}
	for i := range 12 {
		p := "/out/f" + string(rune('a'+i)) + ".bin"
		files[p] = "data"
		arts["public"+p] = schemas.Artifact{Type: "file", Path: p}
	}
	var running, peak atomic.Int32
	ft := &featuretest.Task{Pay: &schemas.Payload{Artifacts: arts}, Expiry: taskExpiry}
	ft.Pub.FailUpload = func(string) error {
		n := running.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(10 * time.Millisecond)
		running.Add(-1)
		return nil
	}
	tf, _ := New(Config{TempDir: t.TempDir(), Parallelism: 3}).NewTask(ft)
	if err := tf.(features.Exiter).Exited(t.Context(), &features.ExitedRequest{Container: &featuretest.Container{Files: files}}); err != nil {
		t.Fatal(err)
	}
	if len(ft.Pub.Names()) != 12 {
		t.Errorf("%d artifacts", len(ft.Pub.Names()))
	}
	if p := peak.Load(); p > 3 {
		t.Errorf("%d uploads at once, bound is 3", p)
	}
}

func TestNoArtifacts(t *testing.T) {
	ft, err := exited(t, Config{}, nil, &featuretest.Container{})
	if err != nil || len(ft.Pub.Names()) != 0 {
		t.Errorf("err %v, artifacts %v", err, ft.Pub.Names())
	}
}

// Large uncompressed files go straight from the archive to the upload; the
// result (bytes, hash, names) is the same as through a temporary file.
func TestStreamedUploads(t *testing.T) {
	c := &featuretest.Container{Files: map[string]string{
		"/big.zst":          strings.Repeat("z", 5000),
		"/out/a.png":        "png bytes",
		"/out/sub/b.zip":    "zip bytes",
		"/out/sub/text.txt": "still gzipped",
	}}
	ft, err := exited(t, Config{StreamThreshold: 1}, map[string]schemas.Artifact{
		"public/big.zst": {Type: "file", Path: "/big.zst"},
		"public/out/":    {Type: "directory", Path: "/out"},
	}, c)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"public/big.zst":          strings.Repeat("z", 5000),
		"public/out/a.png":        "png bytes",
		"public/out/sub/b.zip":    "zip bytes",
		"public/out/sub/text.txt": "still gzipped",
	}
	hashes := ft.ArtifactHashes()
	for name, content := range want {
		a, ok := ft.Pub.Get(name)
		if !ok {
			t.Errorf("%s not uploaded", name)
			continue
		}
		if body(t, a) != content || hashes[name] != sum(content) {
			t.Errorf("%s: body %q, hash %s", name, body(t, a), hashes[name])
		}
		if gz := strings.HasSuffix(name, ".txt"); gz != (a.ContentEncoding == "gzip") {
			t.Errorf("%s: content encoding %q", name, a.ContentEncoding)
		}
	}
}

// A retry of a streamed upload reads the file out of the container again,
// and the digest is that of the body read to its end.
func TestStreamedRetryReadsAgain(t *testing.T) {
	content := strings.Repeat("0123456789", 1000)
	c := &featuretest.Container{Files: map[string]string{"/data/f.bin": content}}
	s := &streamedEntry{c: c, src: "/data/f.bin", size: int64(len(content)), first: strings.NewReader(content)}
	first, err := s.open(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, first, 100); err != nil { // an attempt that fails part-way
		t.Fatal(err)
	}
	first.Close()
	if s.digest() != "" {
		t.Fatal("digest recorded for a partial body")
	}
	again, err := s.open(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(again)
	again.Close()
	if err != nil || string(b) != content {
		t.Fatalf("retry body: %d bytes, %v", len(b), err)
	}
	if s.digest() != sum(content) {
		t.Errorf("digest %s", s.digest())
	}

	c.Files["/data/f.bin"] = "changed"
	if _, err := s.open(t.Context()); err == nil || !strings.Contains(err.Error(), "changed") {
		t.Errorf("a file that changed size was accepted: %v", err)
	}
}
