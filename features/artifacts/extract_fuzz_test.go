package artifacts

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/features/featuretest"
	"go.dockerworker.dev/docker-worker/schemas"
)

// specTar builds the archive a container might return from a spec of one
// entry a line: a name for a regular file (its body is the line), "d:name"
// for a directory, "l:name>target" for a symlink, "h:name>target" for a
// hard link. Lines the tar writer refuses are left out.
func specTar(spec string) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, line := range strings.Split(spec, "\n") {
		typ, name := byte(tar.TypeReg), line
		for prefix, ty := range map[string]byte{"d:": tar.TypeDir, "l:": tar.TypeSymlink, "h:": tar.TypeLink} {
			if rest, ok := strings.CutPrefix(line, prefix); ok {
				typ, name = ty, rest
			}
		}
		name, link, _ := strings.Cut(name, ">")
		h := &tar.Header{Name: name, Typeflag: typ, Mode: 0o644, Linkname: link, ModTime: time.Unix(0, 0)}
		if typ == tar.TypeReg {
			h.Size = int64(len(line))
		}
		if tw.WriteHeader(h) != nil {
			continue
		}
		io.WriteString(tw, line[:h.Size])
	}
	tw.Close()
	return b.Bytes()
}

// FuzzDirectoryArtifact: whatever archive the container returns for a
// directory or file artifact, the feature neither panics nor writes
// anywhere but its spool directory (left empty), and every artifact it
// creates is the payload's artifact itself or a clean name below it.
func FuzzDirectoryArtifact(f *testing.F) {
	for _, s := range []string{
		"d:dir/\ndir/a.txt\nd:dir/sub/\ndir/sub/b.html",
		"d:dir/\ndir/../../pwned",
		"d:dir/\n/etc/cron.d/pwned",
		"d:dir/\ndirx/pwned",
		"d:dir/\nl:dir/link>/etc/passwd\nh:dir/hard>../../etc/shadow\ndir/after",
		"d:dir/\ndir/./a\ndir//b\ndir/c/..",
		"../pwned",
		"file.txt",
		"d:dir\ndir/" + strings.Repeat("deep/", 50) + "x",
		"d:dir/\ndir/a\ndir/a",
		"",
	} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, spec string, dir bool) {
		outside := t.TempDir()
		spool := filepath.Join(outside, "spool")
		if err := os.Mkdir(spool, 0o700); err != nil {
			t.Fatal(err)
		}
		typ := "file"
		if dir {
			typ = "directory"
		}
		const name = "public/out"
		ft := &featuretest.Task{Pay: &schemas.Payload{Artifacts: map[string]schemas.Artifact{name: {Type: typ, Path: "/out"}}}, Expiry: taskExpiry}
		tf, err := New(Config{TempDir: spool}).NewTask(ft)
		if err != nil {
			t.Fatal(err)
		}
		c := &featuretest.Container{Archives: map[string][]byte{"/out": specTar(spec)}, IsDir: map[string]bool{"/out": dir}}
		tf.(features.Exiter).Exited(t.Context(), &features.ExitedRequest{Container: c}) // an unreadable archive may fail the task
		for _, n := range ft.Pub.Names() {
			rest, below := strings.CutPrefix(n, name+"/")
			if n != name && (!below || rest == "" || path.Clean(rest) != rest || rest == ".." || strings.HasPrefix(rest, "../")) {
				t.Errorf("artifact %q created for the payload's %q", n, name)
			}
		}
		left, err := os.ReadDir(outside)
		if err != nil || len(left) != 1 || left[0].Name() != "spool" {
			t.Errorf("beside the spool directory: %v, %v", left, err)
		}
		if left, _ := os.ReadDir(spool); len(left) != 0 {
			t.Errorf("spool files left behind: %v", left)
		}
	})
}
