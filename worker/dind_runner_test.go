package worker_test

// Runner-tier tests of the dind feature: the real worker with the feature,
// the embedded queue and the scripted Docker, in fake time. Privileged
// containers cannot start on the test machines, so the side container is
// scripted: it "creates" its socket as the dind service would, and these
// tests check what the worker asks Docker for and that the side container
// is removed on every path.

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/features/dind"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockerfake"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

const dindImage = "example/dind-service:test"

// lateDocker forwards to the fake the harness creates after the feature.
type lateDocker struct {
	f atomic.Pointer[dockerfake.Fake]
}

func (d *lateDocker) EnsureImage(ctx context.Context, ref string, w io.Writer, p docker.PullPolicy) (string, error) {
	return d.f.Load().EnsureImage(ctx, ref, w, p)
}
func (d *lateDocker) Create(ctx context.Context, s docker.ContainerSpec) (string, error) {
	return d.f.Load().Create(ctx, s)
}
func (d *lateDocker) Start(ctx context.Context, id string) error { return d.f.Load().Start(ctx, id) }
func (d *lateDocker) Remove(ctx context.Context, id string) error {
	return d.f.Load().Remove(ctx, id)
}

// dindScript runs the side container until it is removed, creating its
// socket unless noSocket; the task container exits with code.
func dindScript(code int, noSocket bool, side dockerfake.Script) func(docker.ContainerSpec) dockerfake.Script {
	return func(spec docker.ContainerSpec) dockerfake.Script {
		if spec.Image != dindImage {
			return dockerfake.Script{ExitCode: code}
		}
		if !noSocket {
			for _, b := range spec.Binds {
				if src, dst, _ := strings.Cut(b, ":"); dst == dind.ServiceRunDir {
					os.WriteFile(filepath.Join(src, dind.SocketName), nil, 0o600)
				}
			}
		}
		side.RunUntilKilled = true
		return side
	}
}

func startDind(t *testing.T, script func(docker.ContainerSpec) dockerfake.Script) (*env, string) {
	t.Helper()
	tmp := t.TempDir()
	ld := &lateDocker{}
	f := dind.New(dind.Config{Docker: ld, Image: dindImage, TempDir: tmp})
	e := start(t, setup{extra: []features.Feature{f}, script: script})
	ld.f.Store(e.docker)
	return e, tmp
}

func dindPayload() map[string]any {
	p := payload(60, "true")
	p["features"] = map[string]bool{"dind": true}
	return p
}

// checkSideRemoved checks that the side container was removed and the
// socket directories are gone.
func checkSideRemoved(t *testing.T, e *env, tmp string) {
	t.Helper()
	for _, c := range e.docker.Containers() {
		if c.Spec.Image == dindImage && !c.Removed {
			t.Errorf("side container %s not removed", c.ID)
		}
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("socket directories left: %v", left)
	}
}

func TestDindSideContainerAndTaskSocket(t *testing.T) {
	for _, code := range []int{0, 1} {
		synctest.Test(t, func(t *testing.T) {
			e, tmp := startDind(t, dindScript(code, false, dockerfake.Script{}))
			id := e.createTask(dindPayload())
			st := e.waitRun(id, 0)
			want := map[int]string{0: tc.StateCompleted, 1: tc.StateFailed}[code]
			if st.Runs[0].State != want {
				t.Fatalf("run %+v, want %s", st.Runs[0], want)
			}
			cs := e.docker.Containers()
			if len(cs) != 2 {
				t.Fatalf("containers %+v, want the side container and the task's", cs)
			}
			side, taskC := cs[0], cs[1]
			if !slices.Contains(e.docker.Pulls(), dindImage) {
				t.Errorf("pulls %v lack %s", e.docker.Pulls(), dindImage)
			}
			if !side.Spec.Privileged || !slices.Equal(side.Spec.Env, []string{"PORT="}) || len(side.Spec.Binds) != 1 {
				t.Errorf("side container spec %+v", side.Spec)
			}
			dir, _, _ := strings.Cut(side.Spec.Binds[0], ":")
			wantBind := filepath.Join(dir, dind.SocketName) + ":/var/run/docker.sock:ro"
			if !slices.Contains(taskC.Spec.Binds, wantBind) {
				t.Errorf("task binds %v lack %s", taskC.Spec.Binds, wantBind)
			}
			if taskC.Spec.Privileged {
				t.Error("the task container runs privileged")
			}
			// Fake time stands still here: creation order and the start
			// time say the side container ran first.
			if side.Started.IsZero() || side.Started.After(taskC.Created) {
				t.Error("the side container did not start before the task container was created")
			}
			checkSideRemoved(t, e, tmp)
		})
	}
}

func TestDindServiceFailures(t *testing.T) {
	for _, tc := range []struct {
		name     string
		noSocket bool
		side     dockerfake.Script
	}{
		{name: "start fails", side: dockerfake.Script{StartErr: errFake("cannot start privileged container")}},
		{name: "socket never appears", noSocket: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e, tmp := startDind(t, dindScript(0, tc.noSocket, tc.side))
				id := e.createTask(dindPayload())
				st := e.waitRun(id, 0)
				if r := st.Runs[0]; r.State != "exception" || r.ReasonResolved != "internal-error" {
					t.Fatalf("run %+v, want exception/internal-error", r)
				}
				for _, c := range e.docker.Containers() {
					if c.Spec.Image != dindImage {
						t.Errorf("a task container was created: %+v", c)
					}
				}
				if log, _ := e.taskLog(id, 0); !strings.Contains(log, "dind") {
					t.Errorf("task log does not name dind:\n%s", log)
				}
				checkSideRemoved(t, e, tmp)
			})
		})
	}
}

// TestDindRemovedAfterMaxRunTime: the side container goes with a task
// killed at maxRunTime.
func TestDindRemovedAfterMaxRunTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tmp := t.TempDir()
		ld := &lateDocker{}
		f := dind.New(dind.Config{Docker: ld, Image: dindImage, TempDir: tmp})
		script := func(spec docker.ContainerSpec) dockerfake.Script {
			if spec.Image != dindImage {
				return dockerfake.Script{RunUntilKilled: true}
			}
			return dindScript(0, false, dockerfake.Script{})(spec)
		}
		e := start(t, setup{extra: []features.Feature{f}, script: script})
		ld.f.Store(e.docker)
		p := dindPayload()
		p["maxRunTime"] = 5
		id := e.createTask(p)
		st := e.waitRun(id, 0)
		if st.Runs[0].State != tc.StateFailed {
			t.Fatalf("run %+v, want failed", st.Runs[0])
		}
		time.Sleep(time.Second)
		checkSideRemoved(t, e, tmp)
	})
}

type errFake string

func (e errFake) Error() string { return string(e) }
