package docker

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/distribution/reference"
	"github.com/google/go-cmp/cmp"
)

// file is one entry of a test tar archive.
type file struct{ name, body string }

func tarOf(t *testing.T, files ...file) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body))}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, f.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// untar returns the entries of a tar archive in order; it fails the test
// if the archive is not complete.
func untar(t *testing.T, data []byte) []file {
	t.Helper()
	var files []file
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatalf("rewritten archive: %v", err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("rewritten archive: %v", err)
		}
		files = append(files, file{h.Name, string(body)})
	}
}

func mustTagged(t *testing.T, s string) reference.NamedTagged {
	t.Helper()
	n, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		t.Fatal(err)
	}
	return reference.TagNameOnly(n).(reference.NamedTagged)
}

const (
	oneImage  = `[{"Config":"abc.json","RepoTags":["x:1","y:2"],"Layers":["l1/layer.tar"],"Extra":{"k":1}}]`
	twoImages = `[{"Config":"abc.json","RepoTags":["x:1"],"Layers":[]},{"Config":"def.json","RepoTags":["x:2"],"Layers":[]}]`
	legacyOne = `{"x":{"1":"l1","latest":"l1"},"y":{"2":"l1"}}`
	legacyTwo = `{"x":{"1":"l1","2":"l2"}}`
)

func TestRewriteArchive(t *testing.T) {
	ref := mustTagged(t, "task-image/abc:latest")
	wantManifest := `[{"Config":"abc.json","Extra":{"k":1},"Layers":["l1/layer.tar"],"RepoTags":["task-image/abc:latest"]}]`
	tests := []struct {
		name string
		in   []file
		want []file
	}{
		{
			name: "docker save layout",
			in: []file{
				{"l1/VERSION", "1.0"}, {"l1/json", "{}"}, {"l1/layer.tar", "LAYER"}, {"abc.json", "{}"},
				{"manifest.json", oneImage}, {"repositories", legacyOne},
			},
			want: []file{
				{"l1/VERSION", "1.0"}, {"l1/json", "{}"}, {"l1/layer.tar", "LAYER"}, {"abc.json", "{}"},
				{"manifest.json", wantManifest},
			},
		},
		{
			name: "metadata first, OCI index dropped",
			in: []file{
				{"repositories", legacyOne}, {"./manifest.json", oneImage}, {"index.json", `{"manifests":[]}`},
				{"oci-layout", "{}"}, {"blobs/sha256/aa", "B"},
			},
			want: []file{{"oci-layout", "{}"}, {"blobs/sha256/aa", "B"}, {"./manifest.json", wantManifest}},
		},
		{
			name: "legacy repositories re-keyed",
			in:   []file{{"l1/json", "{}"}, {"l1/layer.tar", "LAYER"}, {"repositories", legacyOne}},
			want: []file{
				{"l1/json", "{}"}, {"l1/layer.tar", "LAYER"},
				{"repositories", `{"task-image/abc":{"latest":"l1"}}`},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := rewriteArchive(&out, bytes.NewReader(tarOf(t, tc.in...)), ref); err != nil {
				t.Fatalf("rewriteArchive: %v", err)
			}
			if diff := cmp.Diff(tc.want, untar(t, out.Bytes()), cmp.AllowUnexported(file{})); diff != "" {
				t.Errorf("rewritten archive (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRewriteArchiveRefuses(t *testing.T) {
	ref := mustTagged(t, "task-image/abc:latest")
	errSource := errors.New("download failed")
	archive := tarOf(t, file{"l1/layer.tar", strings.Repeat("x", 4096)}, file{"manifest.json", oneImage})
	tests := []struct {
		name    string
		in      io.Reader
		want    error
		wantMsg string
	}{
		{"two images", bytes.NewReader(tarOf(t, file{"manifest.json", twoImages})), ErrNotOneImage, "Image tarballs must only contain one image"},
		{"no images", bytes.NewReader(tarOf(t, file{"manifest.json", `[]`})), ErrNotOneImage, "Image tarballs must only contain one image"},
		{"legacy with two images", bytes.NewReader(tarOf(t, file{"repositories", legacyTwo})), ErrNotOneImage, "Image tarballs must only contain one image"},
		{"neither file", bytes.NewReader(tarOf(t, file{"l1/layer.tar", "x"})), ErrUnknownArchiveFormat, "Unknown docker archive format"},
		{"only an OCI index", bytes.NewReader(tarOf(t, file{"index.json", "{}"}, file{"oci-layout", "{}"})), ErrUnknownArchiveFormat, "Unknown docker archive format"},
		{"empty input", strings.NewReader(""), ErrUnknownArchiveFormat, "Unknown docker archive format"},
		{"not a tar archive", strings.NewReader(strings.Repeat("garbage!", 200)), ErrUnknownArchiveFormat, "Unknown docker archive format"},
		{"truncated archive", bytes.NewReader(archive[:2000]), ErrUnknownArchiveFormat, "Unknown docker archive format"},
		{"manifest not JSON", bytes.NewReader(tarOf(t, file{"manifest.json", "{"})), ErrUnknownArchiveFormat, "manifest.json"},
		{"source fails", io.MultiReader(bytes.NewReader(archive[:2000]), iotest.ErrReader(errSource)), errSource, "download failed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := rewriteArchive(io.Discard, tc.in, ref)
			if !errors.Is(err, tc.want) {
				t.Fatalf("rewriteArchive error = %v, want one wrapping %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tc.wantMsg)
			}
			if tc.want == errSource && errors.Is(err, ErrUnknownArchiveFormat) {
				t.Errorf("a source error is blamed on the archive: %v", err)
			}
		})
	}
}

func TestRewriteArchiveWriteErrorIsReturned(t *testing.T) {
	errSink := errors.New("daemon went away")
	in := tarOf(t, file{"l1/layer.tar", strings.Repeat("x", 1<<16)}, file{"manifest.json", oneImage})
	err := rewriteArchive(failingWriter{errSink}, bytes.NewReader(in), mustTagged(t, "a:b"))
	if !errors.Is(err, errSink) || errors.Is(err, ErrUnknownArchiveFormat) {
		t.Errorf("rewriteArchive error = %v, want the writer's error", err)
	}
}

type failingWriter struct{ err error }

func (f failingWriter) Write([]byte) (int, error) { return 0, f.err }

func TestRewriteManifestKeepsFieldsAndSetsTag(t *testing.T) {
	got, err := rewriteManifest([]byte(oneImage), mustTagged(t, "127.0.0.1:5000/a/b"))
	if err != nil {
		t.Fatal(err)
	}
	var m []map[string]any
	if err := json.Unmarshal(got, &m); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]any{"127.0.0.1:5000/a/b:latest"}, m[0]["RepoTags"]); diff != "" {
		t.Errorf("RepoTags (-want +got):\n%s", diff)
	}
	if m[0]["Config"] != "abc.json" || m[0]["Extra"] == nil {
		t.Errorf("other fields lost: %s", got)
	}
}

func TestRefused(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{errors.New("manifest for x:1 not found: manifest unknown: manifest unknown"), true},
		{errors.New(`Head "http://127.0.0.1:5001/v2/x/manifests/latest": no basic auth credentials`), true},
		{errors.New("unauthorized: authentication required"), true},
		{errors.New("pull access denied for x, repository does not exist or may require 'docker login': denied: requested access to the resource is denied"), true},
		{errors.New("name unknown: repository name not known to registry"), true},
		{errors.New("read tcp 127.0.0.1:1->127.0.0.1:2: connection reset by peer"), false},
		{errors.New("unexpected EOF"), false},
		{fmt.Errorf("%w: no progress for 1s", ErrPullStalled), false},
	}
	for _, tc := range tests {
		if got := refused(tc.err); got != tc.want {
			t.Errorf("refused(%q) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestRegistryAuthHidesPassword(t *testing.T) {
	a := RegistryAuth{Username: "u", Password: "s3cret", ServerAddress: "r.example"}
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("pull", "auth", a)
	for _, s := range []string{a.String(), fmt.Sprintf("%v", a), fmt.Sprintf("%+v", a), fmt.Sprintf("%#v", a), fmt.Sprintf("%v", &a), logged.String()} {
		if strings.Contains(s, "s3cret") {
			t.Errorf("%q shows the password", s)
		}
	}
	enc, err := a.encode()
	if err != nil || enc == "" {
		t.Errorf("encode() = %q, %v; want a header value", enc, err)
	}
	var none *RegistryAuth
	if enc, err := none.encode(); enc != "" || err != nil {
		t.Errorf("nil encode() = %q, %v; want empty", enc, err)
	}
}
