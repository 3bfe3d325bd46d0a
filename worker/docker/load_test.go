package docker_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/google/go-cmp/cmp"

	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
)

// entry is one member of an archive held in memory.
type entry struct {
	hdr  *tar.Header
	body []byte
}

func readArchive(t *testing.T, data []byte) []entry {
	t.Helper()
	var es []entry
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return es
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, entry{h, body})
	}
}

func writeArchive(t *testing.T, es []entry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range es {
		h := *e.hdr
		h.Size = int64(len(e.body))
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// without returns the archive less the named members.
func without(t *testing.T, data []byte, names ...string) []byte {
	t.Helper()
	var kept []entry
	for _, e := range readArchive(t, data) {
		if !contains(names, e.hdr.Name) {
			kept = append(kept, e)
		}
	}
	return writeArchive(t, kept)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// variant returns a copy of a one-image `docker save` archive whose image
// config carries one more label, so that it loads as a different image
// with the same layers, and that image's ID.
func variant(t *testing.T, data []byte, label string) ([]byte, string) {
	t.Helper()
	es := readArchive(t, data)
	var manifest []map[string]any
	mi := -1
	for i, e := range es {
		if e.hdr.Name == "manifest.json" {
			mi = i
			if err := json.Unmarshal(e.body, &manifest); err != nil {
				t.Fatal(err)
			}
		}
	}
	if mi < 0 || len(manifest) != 1 {
		t.Fatalf("not a one-image docker save archive")
	}
	oldPath := manifest[0]["Config"].(string)
	var id, newPath string
	for i, e := range es {
		if e.hdr.Name != oldPath {
			continue
		}
		var cfg map[string]any
		if err := json.Unmarshal(e.body, &cfg); err != nil {
			t.Fatal(err)
		}
		inner, _ := cfg["config"].(map[string]any)
		if inner == nil {
			inner = map[string]any{}
			cfg["config"] = inner
		}
		labels, _ := inner["Labels"].(map[string]any)
		if labels == nil {
			labels = map[string]any{}
			inner["Labels"] = labels
		}
		labels["dev.dockerworker.test.variant"] = label
		body, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		id = digestOf(body)
		oldHex := strings.TrimSuffix(strings.TrimPrefix(oldPath, "blobs/sha256/"), ".json")
		newPath = strings.Replace(oldPath, oldHex, strings.TrimPrefix(id, "sha256:"), 1)
		h := *e.hdr
		h.Name = newPath
		es[i] = entry{&h, body}
	}
	if id == "" {
		t.Fatalf("config %s not in the archive", oldPath)
	}
	manifest[0]["Config"] = newPath
	body, err := json.Marshal(manifest)
	if err != nil {
		t.Fatal(err)
	}
	es[mi].body = body
	return writeArchive(t, es), id
}

func save(t *testing.T, c *docker.Client, names ...string) []byte {
	t.Helper()
	data, err := docker.SaveImage(t.Context(), c, names...)
	if err != nil {
		t.Fatalf("save %v: %v (run test/setup-env.sh)", names, err)
	}
	return data
}

// untagAtEnd removes the tags now and when the test ends; images left
// without tags are deleted.
func untagAtEnd(t *testing.T, c *docker.Client, refs ...string) {
	t.Helper()
	untag := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, r := range refs {
			if err := c.RemoveImage(ctx, r); err != nil {
				t.Errorf("untag %s: %v", r, err)
			}
		}
	}
	untag()
	t.Cleanup(untag)
}

// removeAtEnd deletes the images (by ID) now and when the test ends.
func removeAtEnd(t *testing.T, c *docker.Client, ids ...string) {
	t.Helper()
	remove := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, id := range ids {
			if err := docker.RemoveImageID(ctx, c, id); err != nil {
				t.Errorf("remove %s: %v", id, err)
			}
		}
	}
	remove()
	t.Cleanup(remove)
}

func wantID(t *testing.T, c *docker.Client, ref, want string) {
	t.Helper()
	got, err := docker.ImageID(t.Context(), c, ref)
	if err != nil || got != want {
		t.Errorf("image %s = %q, %v; want %q", ref, got, err, want)
	}
}

func wantAbsent(t *testing.T, c *docker.Client, ref string) {
	t.Helper()
	if got, err := docker.ImageID(t.Context(), c, ref); !docker.IsNotFound(err) {
		t.Errorf("image %s = %q, %v; want it absent", ref, got, err)
	}
}

func wantTags(t *testing.T, c *docker.Client, repository string, want ...string) {
	t.Helper()
	got, err := c.ListTags(t.Context(), repository)
	if err != nil {
		t.Fatalf("ListTags(%s): %v", repository, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ListTags(%s) (-want +got):\n%s", repository, diff)
	}
}

func testImageID(t *testing.T, c *docker.Client) string {
	t.Helper()
	id, err := docker.ImageID(t.Context(), c, dockertest.Image)
	if err != nil {
		t.Fatalf("inspect %s: %v (run test/setup-env.sh)", dockertest.Image, err)
	}
	return id
}

// sourceArchive tags the test image as name (a name only this test uses)
// until the test ends and returns the `docker save` archive of name. Tests
// load archives naming such private tags, never the shared test image's, so
// that even a broken LoadImage cannot move the tags other tests rely on.
func sourceArchive(t *testing.T, c *docker.Client, name string) []byte {
	t.Helper()
	untagAtEnd(t, c, name)
	if err := c.TagImage(t.Context(), testImageID(t, c), name); err != nil {
		t.Fatal(err)
	}
	data := save(t, c, name)
	if !bytes.Contains(data, []byte(`"RepoTags":["`+name+`"]`)) {
		t.Fatalf("the saved archive does not name %s", name)
	}
	return data
}

func TestLoadImageUnderNewRef(t *testing.T) {
	c := dockertest.Require(t)
	base := testImageID(t, c)
	const (
		src = "docker-worker-test/load-new-src:latest"
		ref = "docker-worker-test/load-new:sometag"
	)
	untagAtEnd(t, c, ref, "docker-worker-test/load-new:latest")
	archive, want := variant(t, sourceArchive(t, c, src), "new-ref")
	removeAtEnd(t, c, want)

	id, err := c.LoadImage(t.Context(), bytes.NewReader(archive), ref)
	if err != nil {
		t.Fatalf("LoadImage: %v", err)
	}
	if id != want {
		t.Errorf("id = %q, want %q", id, want)
	}
	wantID(t, c, ref, want)
	wantTags(t, c, "docker-worker-test/load-new", ref)
	// The archive's own name still names the test image.
	wantID(t, c, src, base)

	// A reference without a tag gets "latest".
	id, err = c.LoadImage(t.Context(), bytes.NewReader(archive), "docker-worker-test/load-new")
	if err != nil || id != want {
		t.Errorf("LoadImage without a tag = %q, %v; want %q", id, err, want)
	}
	wantTags(t, c, "docker-worker-test/load-new", "docker-worker-test/load-new:latest", ref)
}

// TestLoadImageSameTagTwoRefs loads two different archives that both name
// the image X under two references: neither load touches the other's
// image, nor X.
func TestLoadImageSameTagTwoRefs(t *testing.T) {
	c := dockertest.Require(t)
	base := testImageID(t, c)
	const (
		x    = "docker-worker-test/load-shared:x"
		refA = "docker-worker-test/load-a:latest"
		refB = "docker-worker-test/load-b:latest"
	)
	untagAtEnd(t, c, refA, refB)
	named := sourceArchive(t, c, x)
	a, idA := variant(t, named, "a")
	b, idB := variant(t, named, "b")
	if idA == idB || idA == base {
		t.Fatalf("variants are not distinct: %s %s %s", idA, idB, base)
	}
	removeAtEnd(t, c, idA, idB)

	if got, err := c.LoadImage(t.Context(), bytes.NewReader(a), refA); err != nil || got != idA {
		t.Fatalf("LoadImage(a) = %q, %v; want %q", got, err, idA)
	}
	if got, err := c.LoadImage(t.Context(), bytes.NewReader(b), refB); err != nil || got != idB {
		t.Fatalf("LoadImage(b) = %q, %v; want %q", got, err, idB)
	}
	wantID(t, c, refA, idA)
	wantID(t, c, refB, idB)
	wantID(t, c, x, base)
	wantTags(t, c, "docker-worker-test/load-shared", x)
	wantTags(t, c, "docker-worker-test/load-a", refA)
	wantTags(t, c, "docker-worker-test/load-b", refB)
}

func TestLoadImageRefusesTwoImages(t *testing.T) {
	c := dockertest.Require(t)
	const (
		src   = "docker-worker-test/load-two:src"
		other = "docker-worker-test/load-two:other"
		ref   = "docker-worker-test/load-refused:latest"
	)
	// A second image, present just long enough to save both.
	v, idV := variant(t, sourceArchive(t, c, src), "two")
	removeAtEnd(t, c, idV)
	untagAtEnd(t, c, ref, other)
	if _, err := c.LoadImage(t.Context(), bytes.NewReader(v), other); err != nil {
		t.Fatal(err)
	}
	archive := save(t, c, src, other)
	if err := docker.RemoveImageID(t.Context(), c, idV); err != nil {
		t.Fatal(err)
	}

	_, err := c.LoadImage(t.Context(), bytes.NewReader(archive), ref)
	if !errors.Is(err, docker.ErrNotOneImage) || !strings.Contains(err.Error(), "Image tarballs must only contain one image") {
		t.Fatalf("LoadImage error = %v, want ErrNotOneImage", err)
	}
	wantAbsent(t, c, ref)
	wantAbsent(t, c, idV)
	wantAbsent(t, c, other)
	wantID(t, c, src, testImageID(t, c))
}

func TestLoadImageLegacyFormat(t *testing.T) {
	c := dockertest.Require(t)
	base := testImageID(t, c)
	const (
		src = "docker-worker-test/load-legacy-src:latest"
		ref = "docker-worker-test/load-legacy:v1"
	)
	untagAtEnd(t, c, ref)
	archive := without(t, sourceArchive(t, c, src), "manifest.json")
	if !bytes.Contains(archive, []byte(`{"docker-worker-test/load-legacy-src":{"latest":`)) {
		t.Fatal("the archive has no legacy repositories file naming the source")
	}

	id, err := c.LoadImage(t.Context(), bytes.NewReader(archive), ref)
	if err != nil {
		t.Fatalf("LoadImage: %v", err)
	}
	t.Logf("legacy load: %s (the test image is %s)", id, base)
	wantID(t, c, ref, id)
	wantTags(t, c, "docker-worker-test/load-legacy", ref)
	// The name in the archive's repositories file was not applied.
	wantID(t, c, src, base)
}

func TestLoadImageRefusesBadArchives(t *testing.T) {
	c := dockertest.Require(t)
	const ref = "docker-worker-test/load-bad:latest"
	untagAtEnd(t, c, ref)
	// An image absent locally, so that a partial load would show.
	archive, id := variant(t, sourceArchive(t, c, "docker-worker-test/load-bad-src:latest"), "bad")
	removeAtEnd(t, c, id)
	errSource := errors.New("the download broke")
	half := archive[:len(archive)/2]

	tests := []struct {
		name string
		r    io.Reader
		want error
	}{
		{"garbage", strings.NewReader(strings.Repeat("not a tar archive ", 1000)), docker.ErrUnknownArchiveFormat},
		{"empty", strings.NewReader(""), docker.ErrUnknownArchiveFormat},
		{"no manifest.json nor repositories", bytes.NewReader(without(t, archive, "manifest.json", "repositories")), docker.ErrUnknownArchiveFormat},
		{"truncated", bytes.NewReader(half), docker.ErrUnknownArchiveFormat},
		{"source fails", io.MultiReader(bytes.NewReader(half), iotest.ErrReader(errSource)), errSource},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.LoadImage(t.Context(), tc.r, ref)
			if !errors.Is(err, tc.want) {
				t.Fatalf("LoadImage = %q, %v; want an error wrapping %v", got, err, tc.want)
			}
			t.Logf("error: %v", err)
			wantAbsent(t, c, ref)
			wantAbsent(t, c, id)
		})
	}
}

func TestLoadImageRefusesDigestRef(t *testing.T) {
	c := dockertest.Require(t)
	ref := "docker-worker-test/load-bad@sha256:" + strings.Repeat("0", 64)
	if _, err := c.LoadImage(t.Context(), strings.NewReader(""), ref); err == nil || !strings.Contains(err.Error(), "digest") {
		t.Errorf("LoadImage(%s) error = %v, want a refusal of the digest", ref, err)
	}
}

func TestTagImageAndListTags(t *testing.T) {
	c := dockertest.Require(t)
	base := testImageID(t, c)
	const repo = "docker-worker-test/tags"
	untagAtEnd(t, c, repo+":one", repo+":latest", repo+"-other:one")
	wantTags(t, c, repo)

	for _, ref := range []string{repo + ":one", repo, repo + "-other:one"} {
		if err := c.TagImage(t.Context(), base, ref); err != nil {
			t.Fatalf("TagImage(%s): %v", ref, err)
		}
	}
	if err := c.TagImage(t.Context(), dockertest.Image, repo+":one"); err != nil {
		t.Fatalf("TagImage by reference: %v", err)
	}
	wantTags(t, c, repo, repo+":latest", repo+":one")
	wantTags(t, c, "docker-worker-test/tag")
	wantTags(t, c, "docker.io/"+repo, repo+":latest", repo+":one")
	wantID(t, c, repo+":one", base)

	if err := c.TagImage(t.Context(), base, repo+"@sha256:"+strings.Repeat("0", 64)); err == nil {
		t.Error("TagImage accepted a digest")
	}
	if err := c.TagImage(t.Context(), "sha256:"+strings.Repeat("0", 64), repo+":none"); err == nil {
		t.Error("TagImage of a missing image succeeded")
	}
	if _, err := c.ListTags(t.Context(), repo+":one"); err == nil {
		t.Error("ListTags accepted a reference with a tag")
	}
}

// TestLoadImageReportsDaemonErrors loads an archive whose image config is
// not JSON: the daemon's refusal is the error.
func TestLoadImageReportsDaemonErrors(t *testing.T) {
	c := dockertest.Require(t)
	const ref = "docker-worker-test/load-broken:latest"
	untagAtEnd(t, c, ref)
	es := readArchive(t, sourceArchive(t, c, "docker-worker-test/load-broken-src:latest"))
	broken := 0
	for i, e := range es {
		if strings.HasSuffix(e.hdr.Name, ".json") && !strings.Contains(e.hdr.Name, "/") && e.hdr.Name != "manifest.json" {
			es[i].body = []byte("{not json")
			broken++
		}
	}
	if broken != 1 {
		t.Fatalf("found %d image configs in the archive, want 1", broken)
	}
	_, err := c.LoadImage(t.Context(), bytes.NewReader(writeArchive(t, es)), ref)
	t.Logf("error: %v", err)
	if err == nil || strings.Contains(err.Error(), "reported no error") {
		t.Errorf("LoadImage error = %v, want the daemon's", err)
	}
	if errors.Is(err, docker.ErrUnknownArchiveFormat) || errors.Is(err, docker.ErrNotOneImage) {
		t.Errorf("the daemon's refusal is reported as %v", err)
	}
	wantAbsent(t, c, ref)
}
