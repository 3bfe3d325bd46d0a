package wiring

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/diskgc"
	"go.dockerworker.dev/docker-worker/worker/docker"
)

// presentOrNot is an image.Docker whose images are present when listed.
type presentOrNot struct{ present map[string]string } // ref → id

func (p presentOrNot) EnsureImage(_ context.Context, ref string, _ io.Writer, _ docker.PullPolicy) (string, error) {
	return "id-" + ref, nil
}

func (p presentOrNot) InspectImage(_ context.Context, ref string) (docker.ImageConfig, error) {
	if id, ok := p.present[ref]; ok {
		return docker.ImageConfig{ID: id}, nil
	}
	return docker.ImageConfig{}, errors.New("no such image")
}

func (p presentOrNot) LoadImage(_ context.Context, _ io.Reader, ref string) (string, error) {
	return "id-" + ref, nil
}
func (p presentOrNot) TagImage(context.Context, string, string) error { return nil }
func (p presentOrNot) ListTags(context.Context, string) ([]string, error) {
	return nil, nil
}

// Only images the worker pulled or loaded (and its own tags) are recorded
// for collection; one it found present is not.
func TestTrackedImages(t *testing.T) {
	images := &diskgc.Images{}
	d := trackedImages{Docker: presentOrNot{present: map[string]string{"operator/tool:1": "id-operator/tool:1"}}, images: images}
	ctx := t.Context()
	if _, err := d.EnsureImage(ctx, "operator/tool:1", io.Discard, docker.PullPolicy{}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.EnsureImage(ctx, "busybox:1", io.Discard, docker.PullPolicy{}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.LoadImage(ctx, nil, "docker-worker/task-image/x:latest"); err != nil {
		t.Fatal(err)
	}
	if err := d.TagImage(ctx, "id-docker-worker/task-image/x:latest", "docker-worker/task-image/x:sha256-ab"); err != nil {
		t.Fatal(err)
	}
	// Find what the collector would remove: everything recorded, since
	// nothing is in use and the disk is full.
	var removed []string
	c := diskgc.New(diskgc.Config{Volume: "/", Threshold: 1, Capacity: 1, FreeSpace: func(string) (int64, error) { return 0, nil },
		Now: func() time.Time { return time.Now().Add(time.Hour) }}, removeRecorder{&removed}, images)
	c.Allow(ctx, 1)
	want := map[string]bool{"busybox:1": true, "docker-worker/task-image/x:latest": true, "docker-worker/task-image/x:sha256-ab": true}
	if len(removed) != len(want) {
		t.Errorf("removed %v, want %v", removed, want)
	}
	for _, r := range removed {
		if !want[r] {
			t.Errorf("removed %s, which the worker did not pull or load", r)
		}
	}
}

type removeRecorder struct{ refs *[]string }

func (r removeRecorder) ListContainers(context.Context, map[string]string) ([]docker.ContainerState, error) {
	return nil, nil
}
func (r removeRecorder) Remove(context.Context, string) error { return nil }
func (r removeRecorder) ImagesInUse(context.Context) (map[string]bool, error) {
	return map[string]bool{}, nil
}
func (r removeRecorder) RemoveImage(_ context.Context, ref string) error {
	*r.refs = append(*r.refs, ref)
	return nil
}
