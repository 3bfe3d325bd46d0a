package journal

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/tc"
)

func TestEntryLifecycle(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	taken := time.Now().Add(20 * time.Minute).UTC().Truncate(time.Millisecond)
	e, err := j.Begin(Claim{TaskID: "abc", RunID: 2, WorkerID: "w1",
		Credentials: tc.Credentials{ClientID: "c", AccessToken: "secret"}, TakenUntil: taken})
	if err != nil {
		t.Fatal(err)
	}
	e.Write([]byte("line one\n"))
	e.Write([]byte("line two\n"))
	later := taken.Add(10 * time.Minute)
	if err := e.Reclaimed(tc.Credentials{ClientID: "c2", AccessToken: "s2"}, later); err != nil {
		t.Fatal(err)
	}
	if err := e.Resolving("completed"); err != nil {
		t.Fatal(err)
	}

	info, err := os.Stat(filepath.Join(dir, "runs", "abc-2", "claim.json"))
	if err != nil {
		t.Fatal(err)
	}
	if m := info.Mode().Perm(); m != 0o600 {
		t.Errorf("claim.json mode %v, want 0600", m)
	}

	// A second process cannot use the same directory.
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Open = %v, want in-use error", err)
	}
	// As if the process had died: close the lock without Done.
	j.Close()

	j2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	left, err := j2.Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 1 {
		t.Fatalf("leftovers = %+v, want 1", left)
	}
	l := left[0]
	if l.Err != nil || l.TaskID != "abc" || l.RunID != 2 || l.Credentials.ClientID != "c2" ||
		!l.TakenUntil.Equal(later) || l.Resolution != "completed" || l.WorkerID != "w1" {
		t.Fatalf("leftover = %+v", l)
	}
	b, err := os.ReadFile(l.LogPath())
	if err != nil || string(b) != "line one\nline two\n" {
		t.Fatalf("log = %q, %v", b, err)
	}
	if err := l.Remove(); err != nil {
		t.Fatal(err)
	}
	if left, _ := j2.Leftovers(); len(left) != 0 {
		t.Fatalf("after Remove: %+v", left)
	}
}

func TestDoneRemovesTheEntry(t *testing.T) {
	j, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	e, err := j.Begin(Claim{TaskID: "t", RunID: 0})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Done(); err != nil {
		t.Fatal(err)
	}
	if err := e.Done(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Write([]byte("late")); err != nil {
		t.Fatalf("write after Done: %v", err)
	}
	if left, _ := j.Leftovers(); len(left) != 0 {
		t.Fatalf("leftovers = %+v", left)
	}
}

func TestOpenEmptiesScratchAndKeepsBrokenEntries(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(j.TempDir(), "spool"), []byte("x"), 0o600)
	os.MkdirAll(filepath.Join(j.TempDir(), "d", "e"), 0o700)
	os.MkdirAll(filepath.Join(dir, "runs", "broken-3"), 0o700)
	os.MkdirAll(filepath.Join(dir, "runs", "garbled-0"), 0o700)
	os.WriteFile(filepath.Join(dir, "runs", "garbled-0", "claim.json"), []byte("{"), 0o600)
	j.Close()

	j, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if ents, _ := os.ReadDir(j.TempDir()); len(ents) != 0 {
		t.Fatalf("scratch not emptied: %v", ents)
	}
	left, err := j.Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 2 {
		t.Fatalf("leftovers = %+v", left)
	}
	for _, l := range left {
		if l.Err == nil {
			t.Errorf("%s: want an error", l.TaskID)
		}
	}
	if left[0].TaskID != "broken" || left[0].RunID != 3 {
		t.Errorf("ids from the directory name: %+v", left[0])
	}
}

func TestBeginRefusesPathNames(t *testing.T) {
	j, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for _, id := range []string{"", "..", "a/b", `a\b`} {
		if _, err := j.Begin(Claim{TaskID: id}); err == nil {
			t.Errorf("Begin(%q) succeeded", id)
		}
	}
}
