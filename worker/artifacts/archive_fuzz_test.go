package artifacts

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fuzzTar writes entries (name, type, body or link target) as a tar
// stream; a name the tar writer refuses is left out.
func fuzzTar(entries ...[3]string) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e[0], Typeflag: e[1][0], Mode: 0o644, ModTime: time.Unix(0, 0)}
		switch h.Typeflag {
		case tar.TypeReg:
			h.Size = int64(len(e[2]))
		case tar.TypeSymlink, tar.TypeLink:
			h.Linkname = e[2]
		}
		if tw.WriteHeader(h) != nil {
			continue
		}
		if h.Size > 0 {
			io.WriteString(tw, e[2])
		}
	}
	tw.Close()
	return b.Bytes()
}

// FuzzArchive: a container archive, however crafted, is read without a
// panic, and every entry it yields stays inside the artifact: its name is
// relative and clean, it lies below the root entry, joining it under any
// target directory stays in that directory, and its artifact name stays
// below the directory artifact's name.
func FuzzArchive(f *testing.F) {
	reg, dir, sym, lnk := string(tar.TypeReg), string(tar.TypeDir), string(tar.TypeSymlink), string(tar.TypeLink)
	for _, seed := range [][]byte{
		fuzzTar([3]string{"out/", dir, ""}, [3]string{"out/a.txt", reg, "a"}, [3]string{"out/sub/", dir, ""}, [3]string{"out/sub/b.txt", reg, "b"}),
		fuzzTar([3]string{"f.txt", reg, "hello"}),
		fuzzTar([3]string{"out/", dir, ""}, [3]string{"out/../../escape", reg, "x"}),
		fuzzTar([3]string{"../escape", reg, "x"}),
		fuzzTar([3]string{"out/", dir, ""}, [3]string{"/etc/cron.d/x", reg, "x"}),
		fuzzTar([3]string{"out/", dir, ""}, [3]string{"outside/x", reg, "x"}),
		fuzzTar([3]string{"out/", dir, ""}, [3]string{"outx/y", reg, "x"}),
		fuzzTar([3]string{"out/", dir, ""}, [3]string{"out/./x", reg, "x"}, [3]string{"out//y", reg, "y"}),
		fuzzTar([3]string{"out/", dir, ""}, [3]string{"out/link", sym, "/etc/passwd"}, [3]string{"out/hard", lnk, "../../etc/shadow"}),
		fuzzTar([3]string{"out/", dir, ""}, [3]string{"out/" + strings.Repeat("long/", 40) + "x", reg, "pax"}),
		fuzzTar([3]string{`out\..\x`, reg, "x"}),
		fuzzTar([3]string{"out/", dir, ""}, [3]string{"out/\x00/x", reg, "x"}, [3]string{"out/a\nb", reg, "x"}),
		fuzzTar([3]string{".", dir, ""}, [3]string{"./x", reg, "x"}),
		fuzzTar([3]string{"out/", dir, ""}, [3]string{"out/..", dir, ""}),
		[]byte("not a tar at all"),
		{},
	} {
		f.Add(seed)
	}
	f.Fuzz(checkArchive)
}

// FuzzArchiveNames is FuzzArchive with the archive built from entry names,
// one a line, so that the fuzzer explores names rather than tar checksums.
// A line starting with "d:", "l:" or "h:" is a directory, a symlink or a
// hard link to the rest of the line after a '>'.
func FuzzArchiveNames(f *testing.F) {
	for _, s := range []string{
		"d:out/\nout/a.txt\nd:out/sub\nout/sub/b",
		"out/\nout/../../x",
		"out\noutx/y",
		"d:out\nl:out/l>/etc/passwd\nh:out/h>../../x",
		"../x", "/abs", "d:.\n./x", "d:out/\nout//x", "d:out/\nout/./x", "d:out/\nout/..", "out\\..\\x", "d:out\nout/\x00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		var entries [][3]string
		for _, line := range strings.Split(spec, "\n") {
			typ, name := string(tar.TypeReg), line
			switch {
			case strings.HasPrefix(line, "d:"):
				typ, name = string(tar.TypeDir), line[2:]
			case strings.HasPrefix(line, "l:"):
				typ, name = string(tar.TypeSymlink), line[2:]
			case strings.HasPrefix(line, "h:"):
				typ, name = string(tar.TypeLink), line[2:]
			}
			name, extra, _ := strings.Cut(name, ">")
			if typ == string(tar.TypeReg) {
				extra = "body of " + name
			}
			entries = append(entries, [3]string{name, typ, extra})
		}
		checkArchive(t, fuzzTar(entries...))
	})
}

// checkArchive reads raw as a container archive and checks every entry
// it yields.
func checkArchive(t *testing.T, raw []byte) {
	const target = "/spool/target"
	a := NewArchive(bytes.NewReader(raw))
	var root string
	for i := 0; ; i++ {
		e, err := a.Next()
		if err != nil {
			if e != nil {
				t.Fatalf("entry %d: Next returned %+v with error %v", i, e, err)
			}
			return
		}
		if e.Header == nil || e.Kind != Kind(e.Header) {
			t.Fatalf("entry %d: kind %q for header %+v", i, e.Kind, e.Header)
		}
		if again, err := CleanName(e.Name); err != nil || again != e.Name {
			t.Fatalf("entry %d: name %q is not clean (%q, %v)", i, e.Name, again, err)
		}
		if path.IsAbs(e.Name) || path.Clean(e.Name) != e.Name || e.Name == ".." || strings.HasPrefix(e.Name, "../") {
			t.Fatalf("entry %d: unsafe name %q accepted", i, e.Name)
		}
		if i == 0 {
			root = e.Name
			if e.Rel != "" {
				t.Fatalf("root entry %q has Rel %q", e.Name, e.Rel)
			}
			continue
		}
		if e.Rel == "" || e.Name != root+"/"+e.Rel {
			t.Fatalf("entry %d: %q (rel %q) is not below the root %q", i, e.Name, e.Rel, root)
		}
		if p := filepath.Join(target, e.Rel); !strings.HasPrefix(p, target+"/") {
			t.Fatalf("entry %d: %q joined under %s is %s, outside it", i, e.Name, target, p)
		}
		for _, art := range []string{"public/dir", "public/dir/", "d"} {
			want := strings.TrimSuffix(art, "/") + "/"
			if n := JoinName(art, e.Rel); !strings.HasPrefix(n, want) || path.Clean(n) != n || strings.Contains(n, "/../") {
				t.Fatalf("entry %d: artifact name %q for rel %q of %q is not below it", i, n, e.Rel, art)
			}
		}
	}
}

// FuzzCleanName: CleanName refuses every name that could leave the
// directory it is read into and keeps every other one as given (less a
// trailing slash).
func FuzzCleanName(f *testing.F) {
	for _, s := range []string{"a", "a/b/", "../a", "a/../b", "/a", `\a`, "a//b", "./a", "a/.", "", "/", "a\x00b", "caf\u00e9", "\xff", "a/\u0085"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got, err := CleanName(name)
		if err != nil {
			if !errors.Is(err, ErrUnsafeName) || got != "" {
				t.Fatalf("CleanName(%q) = %q, %v", name, got, err)
			}
			return
		}
		if got != strings.TrimSuffix(name, "/") || got == "" || path.Clean(got) != got || path.IsAbs(got) || got == ".." || strings.HasPrefix(got, "../") || got == "." {
			t.Fatalf("CleanName(%q) = %q, accepted", name, got)
		}
		if p := filepath.Join("/t", got); !strings.HasPrefix(p, "/t/") {
			t.Fatalf("CleanName(%q) = %q, which leaves /t as %s", name, got, p)
		}
	})
}
