package dockersave

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/features/featuretest"
	"go.dockerworker.dev/docker-worker/schemas"
)

// fakeDocker records the calls and serves a fixed saved image.
type fakeDocker struct {
	saved     string
	commitErr error
	saveErr   error
	removeErr error
	calls     []string
	images    map[string]bool
}

func (d *fakeDocker) Commit(_ context.Context, id, ref string) (string, error) {
	d.calls = append(d.calls, "commit "+id+" "+ref)
	if d.commitErr != nil {
		return "", d.commitErr
	}
	if d.images == nil {
		d.images = map[string]bool{}
	}
	d.images[ref] = true
	return "sha256:committed", nil
}

func (d *fakeDocker) SaveImage(_ context.Context, ref string) (io.ReadCloser, error) {
	d.calls = append(d.calls, "save "+ref)
	if d.saveErr != nil {
		return nil, d.saveErr
	}
	return io.NopCloser(strings.NewReader(d.saved)), nil
}

func (d *fakeDocker) RemoveImage(_ context.Context, ref string) error {
	d.calls = append(d.calls, "remove "+ref)
	if d.removeErr != nil {
		return d.removeErr
	}
	delete(d.images, ref)
	return nil
}

var (
	now        = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	taskExpiry = now.Add(30 * 24 * time.Hour)
)

func exited(t *testing.T, d *fakeDocker, pay *schemas.Payload, c features.ContainerFiles, expiry time.Time) (*featuretest.Task, error) {
	t.Helper()
	ft := &featuretest.Task{ID: "Ab-c_dEf", Run: 2, Pay: pay, Expiry: expiry}
	f := New(Config{Docker: d, TempDir: t.TempDir(), Now: func() time.Time { return now }})
	tf, err := f.NewTask(ft)
	if err != nil {
		t.Fatal(err)
	}
	k := tf.(*task)
	err = k.Exited(t.Context(), &features.ExitedRequest{ContainerID: "c1", Container: c})
	if cerr := k.Cleanup(t.Context()); cerr != nil && err == nil {
		err = cerr
	}
	return ft, err
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRepoName(t *testing.T) {
	for _, tc := range []struct {
		id   string
		run  int
		want string
	}{
		{"abc", 0, "abc-0"},
		{"Ab-c_dEf", 2, "ab0c0def-2"},
		{"XYZ__--", 10, "xyz0000-10"},
	} {
		if got := RepoName(tc.id, tc.run); got != tc.want {
			t.Errorf("RepoName(%q, %d) = %q, want %q", tc.id, tc.run, got, tc.want)
		}
	}
}

func TestSavesImageAndCaches(t *testing.T) {
	d := &fakeDocker{saved: "image archive"}
	c := &featuretest.Container{Files: map[string]string{
		"/caches/one/a.txt":     "A",
		"/caches/one/sub/b.txt": "B",
		"/other/x":              "X",
	}, Dirs: []string{"/empty"}}
	pay := &schemas.Payload{Cache: map[string]string{"one": "/caches/one", "two": "/empty"}}
	ft, err := exited(t, d, pay, c, taskExpiry)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"commit c1 ab0c0def-2:latest", "save ab0c0def-2:latest", "remove ab0c0def-2:latest"}
	if diff := cmp.Diff(want, d.calls); diff != "" {
		t.Errorf("docker calls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"public/cache/one.tar", "public/cache/two.tar", "public/dockerImage.tar"}, ft.Pub.Names()); diff != "" {
		t.Errorf("artifacts (-want +got):\n%s", diff)
	}
	img, _ := ft.Pub.Get(ImageArtifact)
	if img.ContentType != "application/x-tar" || img.ContentEncoding != "gzip" {
		t.Errorf("image artifact type %q encoding %q", img.ContentType, img.ContentEncoding)
	}
	if got := string(gunzip(t, img.Body)); got != "image archive" {
		t.Errorf("image body %q", got)
	}
	sum := sha256.Sum256([]byte("image archive"))
	if img.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("image sha256 %q", img.SHA256)
	}
	if want := now.Add(DefaultExpiration); !img.Expires.Equal(want) {
		t.Errorf("expires %v, want %v", img.Expires, want)
	}
	one, _ := ft.Pub.Get("public/cache/one.tar")
	var names []string
	tr := tar.NewReader(bytes.NewReader(gunzip(t, one.Body)))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	slices.Sort(names)
	if diff := cmp.Diff([]string{"a.txt", "sub/", "sub/b.txt"}, names); diff != "" {
		t.Errorf("cache archive entries (-want +got):\n%s", diff)
	}
	if !strings.Contains(ft.LogText(), "public/dockerImage.tar") {
		t.Errorf("task log does not mention the image artifact:\n%s", ft.LogText())
	}
}

func TestExpiryCappedByTask(t *testing.T) {
	soon := now.Add(time.Hour)
	ft, err := exited(t, &fakeDocker{saved: "x"}, &schemas.Payload{}, &featuretest.Container{}, soon)
	if err != nil {
		t.Fatal(err)
	}
	img, _ := ft.Pub.Get(ImageArtifact)
	if !img.Expires.Equal(soon) {
		t.Errorf("expires %v, want the task expiry %v", img.Expires, soon)
	}
}

// TestImageRemovedOnEveryPath checks that the committed image never
// survives the run, and that failures fail the run.
func TestImageRemovedOnEveryPath(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name    string
		d       *fakeDocker
		failPub bool
		calls   []string
		errText string
	}{
		{name: "commit fails", d: &fakeDocker{commitErr: boom},
			calls: []string{"commit c1 ab0c0def-2:latest"}, errText: "boom"},
		{name: "save fails", d: &fakeDocker{saveErr: boom},
			calls: []string{"commit c1 ab0c0def-2:latest", "save ab0c0def-2:latest", "remove ab0c0def-2:latest"}, errText: "boom"},
		{name: "upload fails", d: &fakeDocker{saved: "x"}, failPub: true,
			calls: []string{"commit c1 ab0c0def-2:latest", "save ab0c0def-2:latest", "remove ab0c0def-2:latest"}, errText: "refused"},
		{name: "removal fails, retried in cleanup", d: &fakeDocker{saved: "x", removeErr: boom},
			calls:   []string{"commit c1 ab0c0def-2:latest", "save ab0c0def-2:latest", "remove ab0c0def-2:latest", "remove ab0c0def-2:latest"},
			errText: "could not be removed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ft := &featuretest.Task{ID: "Ab-c_dEf", Run: 2, Pay: &schemas.Payload{}, Expiry: taskExpiry}
			if tc.failPub {
				ft.Pub.FailUpload = func(string) error { return errors.New("refused") }
			}
			tf, err := New(Config{Docker: tc.d, TempDir: t.TempDir()}).NewTask(ft)
			if err != nil {
				t.Fatal(err)
			}
			k := tf.(*task)
			err = errors.Join(k.Exited(t.Context(), &features.ExitedRequest{ContainerID: "c1", Container: &featuretest.Container{}}), k.Cleanup(t.Context()))
			if err == nil || !strings.Contains(err.Error(), tc.errText) {
				t.Errorf("error %v, want one containing %q", err, tc.errText)
			}
			if diff := cmp.Diff(tc.calls, tc.d.calls); diff != "" {
				t.Errorf("docker calls (-want +got):\n%s", diff)
			}
			if err := k.Cleanup(t.Context()); tc.d.removeErr == nil && err != nil {
				t.Errorf("second Cleanup: %v", err)
			}
		})
	}
}

func TestMissingCacheFailsButImageUploads(t *testing.T) {
	ft, err := exited(t, &fakeDocker{saved: "x"}, &schemas.Payload{Cache: map[string]string{"gone": "/nowhere"}}, &featuretest.Container{}, taskExpiry)
	if err == nil || !strings.Contains(err.Error(), "public/cache/gone.tar") {
		t.Errorf("error %v, want one naming public/cache/gone.tar", err)
	}
	if _, ok := ft.Pub.Get(ImageArtifact); !ok {
		t.Error("the image was not uploaded")
	}
}

func TestCleanupWithoutExitedIsNoop(t *testing.T) {
	d := &fakeDocker{}
	tf, err := New(Config{Docker: d}).NewTask(&featuretest.Task{ID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if err := tf.(features.Cleaner).Cleanup(t.Context()); err != nil || len(d.calls) != 0 {
		t.Errorf("Cleanup: %v, calls %v", err, d.calls)
	}
}
