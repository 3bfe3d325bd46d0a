//go:build linux

package artifacts

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// layerTree writes files ("name": content), directories ("name/"),
// symlinks ("name@": target) and overlayfs whiteouts ("name-": "") below dir.
func layerTree(t *testing.T, dir string, entries map[string]string) {
	t.Helper()
	for name, v := range entries {
		switch {
		case strings.HasSuffix(name, "/"):
			if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		base := strings.TrimRight(name, "@-")
		p := filepath.Join(dir, base)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case strings.HasSuffix(name, "@"):
			err = os.Symlink(v, p)
		case strings.HasSuffix(name, "-"):
			err = unix.Mknod(p, unix.S_IFCHR, 0)
		default:
			err = os.WriteFile(p, []byte(v), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// containerRoot mounts a two-layer overlay like a stopped container's.
func containerRoot(t *testing.T) *Root {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("mounting an overlay needs root, and CI runs as root")
		}
		t.Skip("mounting an overlay needs root")
	}
	base := t.TempDir()
	lower, upper := filepath.Join(base, "lower"), filepath.Join(base, "upper")
	layerTree(t, lower, map[string]string{
		"etc/passwd":       "root:x:0:0\n",
		"deleted.txt":      "from the image\n",
		"data/keep.txt":    "kept\n",
		"data/gone.txt":    "deleted later\n",
		"shadowed.txt":     "old\n",
		"work/":            "",
		"work/old/inner.t": "in the image\n",
	})
	layerTree(t, upper, map[string]string{
		"deleted.txt-":     "",
		"data/gone.txt-":   "",
		"data/new.txt":     "new\n",
		"shadowed.txt":     "new\n",
		"out/abs@":         "/etc/passwd",
		"out/rel@":         "../../../../../../etc/passwd",
		"out/dirlink@":     "/",
		"out/up@":          "../..",
		"out/file.txt":     "artifact\n",
		"out/sub/deep.txt": "deep\n",
	})
	r, err := OpenLayers([]string{upper, lower})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func readNode(t *testing.T, r *Root, p string) (string, error) {
	t.Helper()
	n, err := r.Lookup(p)
	if err != nil {
		return "", err
	}
	defer n.Close()
	if n.Kind != KindFile {
		return "", errors.New("kind " + n.Kind)
	}
	f, err := n.Open()
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	return string(b), err
}

func TestRootLayersAndWhiteouts(t *testing.T) {
	r := containerRoot(t)
	for p, want := range map[string]string{
		"/data/keep.txt":     "kept\n",
		"/data/new.txt":      "new\n",
		"/shadowed.txt":      "new\n",
		"out/file.txt":       "artifact\n",
		"/out/../etc/passwd": "root:x:0:0\n",
	} {
		got, err := readNode(t, r, p)
		if err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", p, got, err, want)
		}
	}
	for _, p := range []string{"/deleted.txt", "/data/gone.txt", "/nope", "/out/file.txt/x"} {
		if _, err := r.Lookup(p); !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOTDIR) {
			t.Errorf("%s: %v, want not found", p, err)
		}
	}
	if _, err := r.Lookup("/deleted.txt"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a whited-out file: %v, want fs.ErrNotExist", err)
	}
	n, err := r.Lookup("/data")
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	files, err := n.Files()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		got = append(got, f.Rel)
	}
	if strings.Join(got, ",") != "keep.txt,new.txt" {
		t.Errorf("files below /data: %v", got)
	}
}

// Symlinks resolve inside the container's root, never on the host: an
// absolute link, a link full of "..", and ".." itself all stop at the root.
func TestRootSymlinksCannotEscape(t *testing.T) {
	r := containerRoot(t)
	for _, p := range []string{"/out/dirlink/etc/passwd", "/out/up/etc/passwd", "/../../../etc/passwd", "/out/dirlink/out/up/etc/passwd"} {
		got, err := readNode(t, r, p)
		if err != nil || got != "root:x:0:0\n" {
			t.Errorf("%s = %q, %v; want the container's /etc/passwd", p, got, err)
		}
		n, err := r.Lookup(p)
		if err != nil {
			t.Fatal(err)
		}
		if n.Real != "/etc/passwd" {
			t.Errorf("%s resolves to %q, want /etc/passwd", p, n.Real)
		}
		n.Close()
	}
	// The last element is not followed, as with the archive API.
	for _, p := range []string{"/out/abs", "/out/rel"} {
		n, err := r.Lookup(p)
		if err != nil {
			t.Fatal(err)
		}
		if n.Kind != KindSymlink {
			t.Errorf("%s is a %s, want a symlink", p, n.Kind)
		}
		if _, err := n.Open(); err == nil {
			t.Errorf("%s opened through the link", p)
		}
		n.Close()
	}
	// A directory artifact lists no links and nothing beyond them.
	n, err := r.Lookup("/out")
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	files, err := n.Files()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		got = append(got, f.Rel)
	}
	if strings.Join(got, ",") != "file.txt,sub/deep.txt" {
		t.Errorf("files below /out: %v", got)
	}
	for _, p := range []string{"/out/abs", "/out/rel", "/out/dirlink"} {
		if f, err := r.OpenFile(p); err == nil {
			f.Close()
			t.Errorf("OpenFile(%q) followed the final link", p)
		}
	}
	for _, p := range []string{"/out/dirlink/etc/passwd", "/out/up/etc/passwd", "/../../etc/passwd"} {
		f, err := r.OpenFile(p)
		if err != nil {
			t.Fatalf("OpenFile(%q): %v", p, err)
		}
		b, _ := io.ReadAll(f)
		f.Close()
		if string(b) != "root:x:0:0\n" {
			t.Errorf("OpenFile(%q) = %q, want the container's /etc/passwd", p, b)
		}
	}
}

// A hard link is listed once, as the archive API lists the second name as a
// link entry.
func TestRootHardLinksListedOnce(t *testing.T) {
	dir := t.TempDir()
	layerTree(t, dir, map[string]string{"d/a": "x", "d/b": "y"})
	if err := os.Link(filepath.Join(dir, "d/a"), filepath.Join(dir, "d/c")); err != nil {
		t.Fatal(err)
	}
	r, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	n, err := r.Lookup("d")
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	files, err := n.Files()
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || files[0].Rel != "a" || files[1].Rel != "b" {
		t.Errorf("files: %+v", files)
	}
}
