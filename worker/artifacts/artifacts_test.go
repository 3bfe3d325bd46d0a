package artifacts

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
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
)

func TestContentType(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"test.html", "text/html"},
		{"dir/wow/bar.txt", "text/plain"},
		{"README.TXT", "text/plain"},
		{"world.jpg", "image/jpeg"},
		{"a/b.tar.gz", "application/gzip"},
		{"image.dmg", "application/x-apple-diskimage"},
		{"bin", "application/octet-stream"},
		{"dir/json", "application/octet-stream"},
		{"json", "application/json"}, // docker-worker's quirk
		{".bashrc", "application/octet-stream"},
		{"trailingdot.", "application/octet-stream"},
		{"x.unknownext", "application/octet-stream"},
	} {
		if got := ContentType(tc.name); got != tc.want {
			t.Errorf("ContentType(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestCompress(t *testing.T) {
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"xfoo.txt", true},
		{"x.dmg", false},
		{"x.tar.zst", false},
		{"x.lz4", false},
		{"xlz4", false}, // the skip list's 'lz4' has no dot
		{"x.DMG", true}, // case-sensitive, as docker-worker
		{"x.gz.txt", true},
	} {
		if got := Compress(tc.name, DefaultSkipCompression); got != tc.want {
			t.Errorf("Compress(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func gz(t *testing.T, p []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w := NewGzip(&b)
	if _, err := w.Write(p); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	return b.Bytes()
}

// The exact bytes docker-worker's file_artifact_test expects for "xfoo\n",
// and zlib's output for an empty input.
func TestGzipMatchesZlib(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"xfoo\n", "1f8b0800000000000003ab48cbcfe70200a7e6f65005000000"},
		{"", "1f8b080000000000000303000000000000000000"},
	} {
		if got := hex.EncodeToString(gz(t, []byte(tc.in))); got != tc.want {
			t.Errorf("gzip(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestGzipRoundTrip(t *testing.T) {
	random := make([]byte, 100<<10)
	rand.Read(random)
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"high bytes", []byte{0, 143, 144, 200, 255, 10}},
		{"repetitive small", bytes.Repeat([]byte("hello "), 600)},
		{"exactly the limit", bytes.Repeat([]byte("z"), smallInput)},
		{"one over", bytes.Repeat([]byte("z"), smallInput+1)},
		{"random large", random},
		{"text large", bytes.Repeat([]byte("Hello Number 42\r\n"), 20000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := gz(t, tc.in)
			if out[9] != GzipOSUnix {
				t.Errorf("OS byte %d", out[9])
			}
			zr, err := gzip.NewReader(bytes.NewReader(out))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(zr)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.in) {
				t.Errorf("round trip differs: %d bytes back, %d in", len(got), len(tc.in))
			}
		})
	}
	// Small repetitive input compresses (the shorter encoding wins).
	if out := gz(t, bytes.Repeat([]byte("hello "), 600)); len(out) > 200 {
		t.Errorf("repetitive input not compressed: %d bytes", len(out))
	}
}

type tarEntry struct {
	name, body, link string
	typ              byte
}

func makeTar(t *testing.T, entries ...tarEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body)), Linkname: e.link, ModTime: time.Unix(0, 0)}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			io.WriteString(tw, e.body)
		}
	}
	tw.Close()
	return b.Bytes()
}

func TestCleanName(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"xfoo/", "xfoo", true},
		{"xfoo/wow/bar.txt", "xfoo/wow/bar.txt", true},
		{"../etc/passwd", "", false},
		{"xfoo/../../x", "", false},
		{"/etc/passwd", "", false},
		{"xfoo//x", "", false},
		{"./x", "", false},
		{"", "", false},
		{"a\x00b", "", false},
		{"a\nb", "", false},
		{"\xff", "", false},
	} {
		got, err := CleanName(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("CleanName(%q) = %q, %v; want %q ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrUnsafeName) {
			t.Errorf("CleanName(%q) error %v does not wrap ErrUnsafeName", tc.in, err)
		}
	}
}

func TestArchive(t *testing.T) {
	data := makeTar(t,
		tarEntry{name: "xfoo/", typ: tar.TypeDir},
		tarEntry{name: "xfoo/test.html", body: "<html>", typ: tar.TypeReg},
		tarEntry{name: "xfoo/wow/", typ: tar.TypeDir},
		tarEntry{name: "xfoo/wow/bar.txt", body: "bar", typ: tar.TypeReg},
		tarEntry{name: "xfoo/link", link: "/etc/passwd", typ: tar.TypeSymlink},
	)
	a := NewArchive(bytes.NewReader(data))
	var got []string
	for {
		e, err := a.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e.Kind+":"+e.Rel)
	}
	want := "directory:,file:test.html,directory:wow,file:wow/bar.txt,symlink:link"
	if strings.Join(got, ",") != want {
		t.Errorf("entries %v, want %s", got, want)
	}

	for name, entries := range map[string][]tarEntry{
		"dot-dot":        {{name: "xfoo/", typ: tar.TypeDir}, {name: "xfoo/../../escape", body: "x", typ: tar.TypeReg}},
		"dot-dot root":   {{name: "../escape", body: "x", typ: tar.TypeReg}},
		"absolute":       {{name: "xfoo/", typ: tar.TypeDir}, {name: "/etc/cron.d/x", body: "x", typ: tar.TypeReg}},
		"outside root":   {{name: "xfoo/", typ: tar.TypeDir}, {name: "other/x", body: "x", typ: tar.TypeReg}},
		"root prefix in": {{name: "xfoo/", typ: tar.TypeDir}, {name: "xfoobar/x", body: "x", typ: tar.TypeReg}},
	} {
		t.Run(name, func(t *testing.T) {
			a := NewArchive(bytes.NewReader(makeTar(t, entries...)))
			var err error
			for err == nil {
				_, err = a.Next()
			}
			if !errors.Is(err, ErrUnsafeName) {
				t.Errorf("got %v, want ErrUnsafeName", err)
			}
		})
	}
}

func TestArchiveGarbage(t *testing.T) {
	// Truncated or random input gives errors, never a panic.
	good := makeTar(t, tarEntry{name: "f", body: strings.Repeat("x", 2000), typ: tar.TypeReg})
	for _, in := range [][]byte{good[:100], good[:700], []byte("not a tar at all, but long enough to look at: " + strings.Repeat("?", 600))} {
		a := NewArchive(bytes.NewReader(in))
		for range 10 {
			e, err := a.Next()
			if err != nil {
				break
			}
			io.Copy(io.Discard, e.Body)
		}
	}
}

func TestJoinName(t *testing.T) {
	for _, tc := range []struct{ dir, rel, want string }{
		{"public/dir", "wow/bar.txt", "public/dir/wow/bar.txt"},
		{"public/dir/", "wow/bar.txt", "public/dir/wow/bar.txt"},
	} {
		if got := JoinName(tc.dir, tc.rel); got != tc.want {
			t.Errorf("JoinName(%q, %q) = %q, want %q", tc.dir, tc.rel, got, tc.want)
		}
	}
}

func TestSpool(t *testing.T) {
	dir := t.TempDir()
	body := bytes.Repeat([]byte("spool me\n"), 10000)
	sum := sha256.Sum256(body)
	for _, gzOn := range []bool{false, true} {
		sp, err := Spool(dir, bytes.NewReader(body), gzOn)
		if err != nil {
			t.Fatal(err)
		}
		if sp.SHA256 != hex.EncodeToString(sum[:]) || sp.RawSize != int64(len(body)) {
			t.Errorf("gzip=%v: sha256 %s raw %d", gzOn, sp.SHA256, sp.RawSize)
		}
		st, err := os.Stat(sp.Path)
		if err != nil || st.Size() != sp.Size {
			t.Fatalf("gzip=%v: stat %v, size %d", gzOn, err, sp.Size)
		}
		if filepath.Dir(sp.Path) != dir {
			t.Errorf("spooled outside dir: %s", sp.Path)
		}
		rc, _ := sp.Open(t.Context())
		var r io.Reader = rc
		if gzOn {
			if sp.Size >= int64(len(body)) {
				t.Errorf("gzip did not shrink: %d", sp.Size)
			}
			zr, err := gzip.NewReader(rc)
			if err != nil {
				t.Fatal(err)
			}
			r = zr
		}
		got, _ := io.ReadAll(r)
		rc.Close()
		if !bytes.Equal(got, body) {
			t.Errorf("gzip=%v: content differs", gzOn)
		}
	}
}

func TestGroupBound(t *testing.T) {
	g := NewGroup(3)
	var running, peak atomic.Int32
	for range 20 {
		if err := g.Acquire(t.Context()); err != nil {
			t.Fatal(err)
		}
		g.Go(func() {
			n := running.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(5 * time.Millisecond)
			running.Add(-1)
		})
	}
	g.Wait()
	if p := peak.Load(); p > 3 || p < 1 {
		t.Errorf("peak parallelism %d, want 1..3", p)
	}
}

func TestLogFile(t *testing.T) {
	dir := t.TempDir()
	l, err := NewLogFile(dir, "log-*.gz")
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(l, "hello\r\n")
	io.WriteString(l, "world\r\n")
	size, sum, err := l.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if s2, sum2, _ := l.Finish(); s2 != size || sum2 != sum {
		t.Error("a second Finish differs")
	}
	want := sha256.Sum256([]byte("hello\r\nworld\r\n"))
	if sum != hex.EncodeToString(want[:]) {
		t.Errorf("sha256 %s", sum)
	}
	rc, err := l.Open(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(rc)
	rc.Close()
	if int64(len(raw)) != size || raw[9] != GzipOSUnix {
		t.Fatalf("compressed %d bytes (size %d), OS byte %d", len(raw), size, raw[9])
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(zr); string(b) != "hello\r\nworld\r\n" {
		t.Errorf("content %q", b)
	}
	if err := l.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := l.Remove(); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("left %v", left)
	}
}

// Large inputs compress in parallel into a valid gzip stream with zlib's
// header fields, and below ParallelGzipMin the output is Gzip's, byte for
// byte.
func TestSpoolSizedParallelGzip(t *testing.T) {
	dir := t.TempDir()
	big := bytes.Repeat([]byte("Hello Number 42\r\n"), ParallelGzipMin/17+1000)
	sp, err := SpoolSized(dir, bytes.NewReader(big), true, int64(len(big)))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(sp.Path)
	if err != nil {
		t.Fatal(err)
	}
	if raw[9] != GzipOSUnix || !bytes.Equal(raw[4:8], []byte{0, 0, 0, 0}) {
		t.Errorf("header %x, want mtime 0 and OS %d", raw[:10], GzipOSUnix)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	back, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(back, big) {
		t.Fatalf("round trip: %d bytes, %v", len(back), err)
	}
	sum := sha256.Sum256(big)
	if sp.SHA256 != hex.EncodeToString(sum[:]) || sp.RawSize != int64(len(big)) || sp.Size != int64(len(raw)) {
		t.Errorf("spooled %+v", sp)
	}
	small := big[:ParallelGzipMin-1]
	a, err := SpoolSized(dir, bytes.NewReader(small), true, int64(len(small)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Spool(dir, bytes.NewReader(small), true)
	if err != nil {
		t.Fatal(err)
	}
	ab, _ := os.ReadFile(a.Path)
	bb, _ := os.ReadFile(b.Path)
	if !bytes.Equal(ab, bb) {
		t.Error("below ParallelGzipMin SpoolSized's output differs from Spool's")
	}
}
