package dist

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const stamped = "1.2.3-rc.1"

// repoRoot is the checkout this package is in.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// dist runs test/dist.sh with args and extra environment, returning its
// stdout; a failure ends the test.
func dist(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "bash", append([]string{filepath.Join(repoRoot(t), "test", "dist.sh")}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("dist.sh %q: %v\nstdout:\n%s\nstderr:\n%s", args, err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func git(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("git", append([]string{"-C", repoRoot(t)}, args...)...).Output()
	if err != nil {
		t.Fatalf("git %q: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}

// wantCommit is what dist.sh stamps for the checkout as it is.
func wantCommit(t *testing.T) string {
	c := git(t, "rev-parse", "HEAD")
	if git(t, "status", "--porcelain", "--untracked-files=no") != "" {
		c += "-dirty"
	}
	return c
}

type entry struct {
	mode    int64
	typ     byte
	uid     int
	gid     int
	mtime   int64
	content []byte
}

// readTarball returns the entries of a .tar.gz by name, in archive order.
func readTarball(t *testing.T, path string) ([]string, map[string]entry) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() {
		t.Errorf("%s: gzip header records name %q, time %v", path, zr.Name, zr.ModTime)
	}
	tr := tar.NewReader(zr)
	var names []string
	entries := map[string]entry{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(h.Name, "/")
		names = append(names, name)
		entries[name] = entry{mode: h.Mode, typ: h.Typeflag, uid: h.Uid, gid: h.Gid, mtime: h.ModTime.Unix(), content: body}
	}
	return names, entries
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// trackedFiles are the files git tracks under dir that exist in the work
// tree, relative to the repository root.
func trackedFiles(t *testing.T, dir string) []string {
	var files []string
	for _, f := range strings.Split(git(t, "ls-files", "--", dir), "\n") {
		if fi, err := os.Stat(filepath.Join(repoRoot(t), f)); f != "" && err == nil && fi.Mode().IsRegular() {
			files = append(files, f)
		}
	}
	return files
}

func TestDist(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-builds two binaries")
	}
	root := repoRoot(t)
	commit := wantCommit(t)
	out := t.TempDir()
	// Every architecture with DW_DIST_ALL_ARCHES set; amd64 alone by
	// default, since a cold cross build of the module for arm64 costs
	// minutes of CI (make dist builds both).
	arches := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	distArches := "amd64 arm64"
	if os.Getenv("DW_DIST_ALL_ARCHES") == "" {
		delete(arches, "arm64")
		distArches = "amd64"
	}
	printed := dist(t, []string{"VERSION=" + stamped, "DIST_ARCHES=" + distArches}, out)

	var tarballs []string
	for arch := range arches {
		tarballs = append(tarballs, fmt.Sprintf("docker-worker-%s-linux-%s.tar.gz", stamped, arch))
	}
	slices.Sort(tarballs)

	// Exactly the tarballs and SHA256SUMS, whose lines check out.
	ents, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	want := append(slices.Clone(tarballs), "SHA256SUMS")
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("dist output = %q, want %q", got, want)
	}
	sums, err := os.ReadFile(filepath.Join(out, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	var wantSums strings.Builder
	for _, tb := range tarballs {
		fmt.Fprintf(&wantSums, "%s  %s\n", sha256File(t, filepath.Join(out, tb)), tb)
		if !strings.Contains(printed, filepath.Join(out, tb)) {
			t.Errorf("dist.sh did not name %s in its output %q", tb, printed)
		}
	}
	if string(sums) != wantSums.String() {
		t.Errorf("SHA256SUMS =\n%s\nwant\n%s", sums, wantSums.String())
	}
	// sha256sum agrees, as an operator would check it.
	check := exec.Command("sha256sum", "--check", "--strict", "SHA256SUMS")
	check.Dir = out
	if b, err := check.CombinedOutput(); err != nil {
		t.Errorf("sha256sum --check: %v\n%s", err, b)
	}

	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	schemaFiles, _ := filepath.Glob(filepath.Join(root, "schemas", "*.json"))
	if len(schemaFiles) == 0 {
		t.Fatal("no schemas/*.json in the checkout")
	}
	deployFiles := trackedFiles(t, "deploy")

	for arch, machine := range arches {
		top := fmt.Sprintf("docker-worker-%s-linux-%s", stamped, arch)
		names, entries := readTarball(t, filepath.Join(out, top+".tar.gz"))

		// What must be there, with the checkout's bytes.
		want := map[string][]byte{top + "/README.md": readme}
		for _, f := range schemaFiles {
			b, _ := os.ReadFile(f)
			want[top+"/schemas/"+filepath.Base(f)] = b
		}
		for _, f := range deployFiles {
			b, _ := os.ReadFile(filepath.Join(root, f))
			want[top+"/"+f] = b
		}
		for name, b := range want {
			if e, ok := entries[name]; !ok {
				t.Errorf("%s: %s missing", arch, name)
			} else if !bytes.Equal(e.content, b) {
				t.Errorf("%s: %s differs from the checkout's", arch, name)
			}
		}
		// Nothing else but the binary and directories; every entry under
		// the one top directory, sorted, owned by 0:0 with the same time.
		var mtime int64 = -1
		for _, name := range names {
			e := entries[name]
			_, expected := want[name]
			switch {
			case name == top || e.typ == tar.TypeDir && strings.HasPrefix(name, top+"/"):
			case name == top+"/docker-worker":
				if e.typ != tar.TypeReg || e.mode != 0o755 {
					t.Errorf("%s: binary type %c mode %o, want a regular file 0755", arch, e.typ, e.mode)
				}
			case expected:
				if e.typ != tar.TypeReg || (e.mode != 0o644 && e.mode != 0o755) {
					t.Errorf("%s: %s type %c mode %o", arch, name, e.typ, e.mode)
				}
			default:
				t.Errorf("%s: unexpected entry %s", arch, name)
			}
			if e.uid != 0 || e.gid != 0 {
				t.Errorf("%s: %s owned by %d:%d", arch, name, e.uid, e.gid)
			}
			if mtime == -1 {
				mtime = e.mtime
			} else if e.mtime != mtime {
				t.Errorf("%s: %s has time %d, others %d", arch, name, e.mtime, mtime)
			}
		}
		if !slices.IsSorted(names) {
			t.Errorf("%s: entries not sorted: %q", arch, names)
		}
		if ct := git(t, "log", "-1", "--format=%ct", "HEAD"); fmt.Sprint(mtime) != ct {
			t.Errorf("%s: entry time %d, want the commit's %s", arch, mtime, ct)
		}

		// The binary: the right architecture, statically linked.
		bin := entries[top+"/docker-worker"].content
		ef, err := elf.NewFile(bytes.NewReader(bin))
		if err != nil {
			t.Fatalf("%s: binary is not ELF: %v", arch, err)
		}
		if ef.Machine != machine {
			t.Errorf("%s: ELF machine %v, want %v", arch, ef.Machine, machine)
		}
		for _, p := range ef.Progs {
			if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
				t.Errorf("%s: binary is dynamically linked (%v)", arch, p.Type)
			}
		}
		if libs, _ := ef.ImportedLibraries(); len(libs) > 0 {
			t.Errorf("%s: binary needs %q", arch, libs)
		}
		ef.Close()

		// The binary this machine can run reports what was stamped.
		if arch == runtime.GOARCH && runtime.GOOS == "linux" {
			path := filepath.Join(t.TempDir(), "docker-worker")
			if err := os.WriteFile(path, bin, 0o755); err != nil {
				t.Fatal(err)
			}
			v, err := exec.Command(path, "version").Output()
			if err != nil {
				t.Fatalf("%s version: %v", path, err)
			}
			wantV := fmt.Sprintf("docker-worker %s (commit %s; go", stamped, commit)
			if !strings.HasPrefix(string(v), wantV) || !strings.HasSuffix(string(v), " linux/"+arch+")\n") {
				t.Errorf("version = %q, want %q...linux/%s)", v, wantV, arch)
			}
		}
	}

	// A rebuild of the same commit is byte-identical.
	again := t.TempDir()
	dist(t, []string{"VERSION=" + stamped, "DIST_ARCHES=" + distArches}, again)
	if b, err := os.ReadFile(filepath.Join(again, "SHA256SUMS")); err != nil || !bytes.Equal(b, sums) {
		t.Errorf("rebuild SHA256SUMS =\n%s\nfirst build's\n%s", b, sums)
	}
}

// Without VERSION the version comes from the checkout: a vX.Y.Z tag on
// HEAD, else the source's base version, -dev and the commit.
func TestComputedVersion(t *testing.T) {
	root := repoRoot(t)
	src, err := os.ReadFile(filepath.Join(root, "cmd", "docker-worker", "version.go"))
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(src), "\nconst baseVersion = \"")
	base, _, _ := strings.Cut(after, "\"")
	if !ok || base == "" {
		t.Fatal("no baseVersion in cmd/docker-worker/version.go")
	}
	commit := wantCommit(t)
	want := base + "-dev." + commit[:12]
	if tag, err := exec.Command("git", "-C", root, "describe", "--tags", "--exact-match", "--match", "v[0-9]*", "HEAD").Output(); err == nil {
		want = strings.TrimPrefix(strings.TrimSpace(string(tag)), "v")
	}
	if strings.HasSuffix(commit, "-dirty") {
		want += ".dirty"
	}
	got := dist(t, []string{"VERSION="}, "--print-version")
	if wantOut := "version " + want + "\ncommit " + commit + "\n"; got != wantOut {
		t.Errorf("--print-version = %q, want %q", got, wantOut)
	}
	// A stamped version is checked for characters a file name can carry.
	cmd := exec.Command("bash", filepath.Join(root, "test", "dist.sh"), "--print-version")
	cmd.Env = append(os.Environ(), "VERSION=1.0 beta/2")
	if b, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(b), "dist: version 1.0 beta/2: use letters, digits") {
		t.Errorf("bad VERSION: %v, %q", err, b)
	}
}
