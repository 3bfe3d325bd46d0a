package dind

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/features/featuretest"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/taskerr"
)

// fakeDocker plays the dind service: Start creates the socket in the
// bound directory unless noSocket is set.
type fakeDocker struct {
	pullErr, createErr, startErr, removeErr error
	noSocket                                bool
	specs                                   []docker.ContainerSpec
	calls                                   []string
}

func (d *fakeDocker) EnsureImage(_ context.Context, ref string, _ io.Writer, _ docker.PullPolicy) (string, error) {
	d.calls = append(d.calls, "pull "+ref)
	return "sha256:dind", d.pullErr
}

func (d *fakeDocker) Create(_ context.Context, spec docker.ContainerSpec) (string, error) {
	d.calls = append(d.calls, "create")
	d.specs = append(d.specs, spec)
	if d.createErr != nil {
		return "", d.createErr
	}
	return "side", nil
}

func (d *fakeDocker) Start(_ context.Context, id string) error {
	d.calls = append(d.calls, "start "+id)
	if d.startErr != nil {
		return d.startErr
	}
	if !d.noSocket {
		dir, _, _ := strings.Cut(d.specs[len(d.specs)-1].Binds[0], ":")
		return os.WriteFile(filepath.Join(dir, SocketName), nil, 0o600)
	}
	return nil
}

func (d *fakeDocker) Remove(_ context.Context, id string) error {
	d.calls = append(d.calls, "remove "+id)
	return d.removeErr
}

func prepare(t *testing.T, d *fakeDocker) (*task, *features.PrepareResponse, error) {
	t.Helper()
	tf, err := New(Config{Docker: d, Image: "example/dind:1", TempDir: t.TempDir(), Wait: 300 * time.Millisecond}).NewTask(&featuretest.Task{ID: "t"})
	if err != nil {
		t.Fatal(err)
	}
	k := tf.(*task)
	var resp features.PrepareResponse
	err = k.Prepare(t.Context(), &features.PrepareRequest{}, &resp)
	return k, &resp, err
}

func TestPrepareStartsServiceAndBindsSocket(t *testing.T) {
	d := &fakeDocker{}
	k, resp, err := prepare(t, d)
	if err != nil {
		t.Fatal(err)
	}
	dir := k.dir
	if diff := cmp.Diff([]docker.ContainerSpec{{
		Image: "example/dind:1", Env: []string{"PORT="}, Privileged: true,
		Binds:  []string{dir + ":/opt/dind-service/run"},
		Labels: map[string]string{"dev.dockerworker.dind.task-id": "t", "dev.dockerworker.dind.run-id": "0"},
	}}, d.specs); diff != "" {
		t.Errorf("side container (-want +got):\n%s", diff)
	}
	want := []features.Mount{{Source: filepath.Join(dir, "docker.sock"), Target: "/var/run/docker.sock", ReadOnly: true}}
	if diff := cmp.Diff(want, resp.Mounts); diff != "" {
		t.Errorf("task mounts (-want +got):\n%s", diff)
	}
	if len(resp.Env) != 0 || resp.Privileged {
		t.Errorf("the task container gets env %v, privileged %v", resp.Env, resp.Privileged)
	}
	if err := k.Cleanup(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := k.Cleanup(t.Context()); err != nil {
		t.Fatalf("second Cleanup: %v", err)
	}
	if diff := cmp.Diff([]string{"pull example/dind:1", "create", "start side", "remove side"}, d.calls); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("socket directory left: %v", err)
	}
}

func TestCleanupOnEveryPath(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name  string
		d     *fakeDocker
		kind  taskerr.Kind
		calls []string
	}{
		{"pull fails", &fakeDocker{pullErr: boom}, taskerr.ResourceUnavailableKind, []string{"pull example/dind:1"}},
		{"create fails", &fakeDocker{createErr: boom}, taskerr.InternalErrorKind, []string{"pull example/dind:1", "create"}},
		{"start fails", &fakeDocker{startErr: boom}, taskerr.InternalErrorKind, []string{"pull example/dind:1", "create", "start side", "remove side"}},
		{"no socket", &fakeDocker{noSocket: true}, taskerr.InternalErrorKind, []string{"pull example/dind:1", "create", "start side", "remove side"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, _, err := prepare(t, tc.d)
			if err == nil || taskerr.Classify(err) != tc.kind {
				t.Fatalf("Prepare: %v (kind %v), want kind %v", err, taskerr.Classify(err), tc.kind)
			}
			dir := k.dir
			if err := k.Cleanup(t.Context()); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.calls, tc.d.calls); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
			if dir != "" {
				if _, err := os.Stat(dir); !os.IsNotExist(err) {
					t.Errorf("socket directory left: %v", err)
				}
			}
		})
	}
}

func TestRemoveFailureReportedAndRetried(t *testing.T) {
	d := &fakeDocker{removeErr: errors.New("busy")}
	k, _, err := prepare(t, d)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Cleanup(t.Context()); err == nil {
		t.Fatal("Cleanup hid the failed removal")
	}
	d.removeErr = nil
	if err := k.Cleanup(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(strings.Join(d.calls, ","), "remove side"); n != 2 {
		t.Errorf("%d removals, want 2", n)
	}
}
