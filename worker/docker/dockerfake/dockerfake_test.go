package dockerfake_test

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockerfake"
)

// started creates a container following script, attaches to it and starts
// it; the returned channel yields everything read from the attach stream.
func started(t *testing.T, f *dockerfake.Fake, script dockerfake.Script) (string, <-chan string) {
	t.Helper()
	f.Script = func(docker.ContainerSpec) dockerfake.Script { return script }
	ctx := t.Context()
	id, err := f.Create(ctx, docker.ContainerSpec{Image: "img", Cmd: []string{"run"}})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	stream, err := f.Attach(ctx, id)
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	out := make(chan string, 1)
	go func() {
		defer stream.Close()
		b, _ := io.ReadAll(stream)
		out <- string(b)
	}()
	if err := f.Start(ctx, id); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return id, out
}

func TestScriptedRun(t *testing.T) {
	for _, tc := range []struct {
		name     string
		script   dockerfake.Script
		wantOut  string
		wantCode int
		wantTook time.Duration
	}{
		{name: "zero script", wantOut: "", wantCode: 0},
		{
			name:     "output in steps",
			script:   dockerfake.Script{Steps: []dockerfake.Step{{Output: "one\n"}, {After: time.Second, Output: "two\n"}, {After: 2 * time.Second, Output: "three\n"}}, ExitCode: 3},
			wantOut:  "one\ntwo\nthree\n",
			wantCode: 3,
			wantTook: 3 * time.Second,
		},
		{
			name:     "exit after a pause",
			script:   dockerfake.Script{Steps: []dockerfake.Step{{After: time.Hour}}, ExitCode: 1},
			wantCode: 1,
			wantTook: time.Hour,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &dockerfake.Fake{}
				defer f.Close()
				start := time.Now()
				id, out := started(t, f, tc.script)
				code, err := f.Wait(t.Context(), id)
				if err != nil {
					t.Fatalf("Wait: %v", err)
				}
				if code != tc.wantCode {
					t.Errorf("exit code: got %d, want %d", code, tc.wantCode)
				}
				if took := time.Since(start); took != tc.wantTook {
					t.Errorf("took %v, want %v", took, tc.wantTook)
				}
				if got := <-out; got != tc.wantOut {
					t.Errorf("output: got %q, want %q", got, tc.wantOut)
				}
				if err := f.Remove(t.Context(), id); err != nil {
					t.Fatal(err)
				}
				if got := f.Leaked(); len(got) != 0 {
					t.Errorf("leaked %v", got)
				}
				if got := f.Containers()[0]; got.Killed || got.ExitCode != tc.wantCode || !got.Removed {
					t.Errorf("record: got %+v", got)
				}
			})
		})
	}
}

// Kill stops a container that runs until killed, and releases Wait with
// 137; cancelling a Wait abandons the wait, not the container.
func TestKillReleasesWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &dockerfake.Fake{}
		defer f.Close()
		id, out := started(t, f, dockerfake.Script{Steps: []dockerfake.Step{{Output: "up\n"}}, RunUntilKilled: true})

		ctx, cancel := context.WithCancelCause(t.Context())
		abandoned := make(chan error, 1)
		go func() {
			_, err := f.Wait(ctx, id)
			abandoned <- err
		}()
		cause := errors.New("gave up")
		time.Sleep(time.Minute)
		cancel(cause)
		if err := <-abandoned; !errors.Is(err, cause) {
			t.Errorf("cancelled Wait: got %v, want %v", err, cause)
		}
		if got, want := f.Running(), []string{id}; !cmp.Equal(got, want) {
			t.Fatalf("running after an abandoned wait: got %v, want %v", got, want)
		}

		waited := make(chan int, 1)
		go func() {
			code, err := f.Wait(context.Background(), id)
			if err != nil {
				t.Errorf("Wait: %v", err)
			}
			waited <- code
		}()
		time.Sleep(time.Hour)
		synctest.Wait()
		select {
		case code := <-waited:
			t.Fatalf("Wait returned %d before the kill", code)
		default:
		}
		killAt := time.Now()
		if err := f.Kill(t.Context(), id); err != nil {
			t.Fatal(err)
		}
		if got := <-waited; got != dockerfake.ExitKilled {
			t.Errorf("exit code: got %d, want %d", got, dockerfake.ExitKilled)
		}
		if got := <-out; got != "up\n" {
			t.Errorf("output: got %q", got)
		}
		if diff := cmp.Diff([]dockerfake.Call{{ID: id, At: killAt}}, f.Kills()); diff != "" {
			t.Errorf("kills (-want +got):\n%s", diff)
		}
		c := f.Containers()[0]
		if !c.Killed || c.Stopped != killAt {
			t.Errorf("record: got %+v", c)
		}
		// Killing a stopped or unknown container is not an error.
		for _, id := range []string{id, "nope"} {
			if err := f.Kill(t.Context(), id); err != nil {
				t.Errorf("Kill(%s): %v", id, err)
			}
		}
	})
}

// A step with Until waits for the gate; killing the container meanwhile
// skips the rest of the script.
func TestUntilGate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &dockerfake.Fake{}
		defer f.Close()
		gate := make(chan struct{})
		id, out := started(t, f, dockerfake.Script{Steps: []dockerfake.Step{
			{Output: "a"}, {Until: gate, Output: "b"}, {Output: "c"},
		}})
		synctest.Wait()
		if got := f.Running(); len(got) != 1 {
			t.Fatalf("running: got %v, want the gated container", got)
		}
		close(gate)
		if code, err := f.Wait(t.Context(), id); code != 0 || err != nil {
			t.Fatalf("Wait: got %d, %v", code, err)
		}
		if got := <-out; got != "abc" {
			t.Errorf("output: got %q, want %q", got, "abc")
		}

		id, out = started(t, f, dockerfake.Script{Steps: []dockerfake.Step{{Output: "a"}, {Until: make(chan struct{}), Output: "b"}}})
		synctest.Wait()
		f.Kill(t.Context(), id)
		if code, _ := f.Wait(t.Context(), id); code != dockerfake.ExitKilled {
			t.Errorf("exit code: got %d, want %d", code, dockerfake.ExitKilled)
		}
		if got := <-out; got != "a" {
			t.Errorf("output: got %q, want %q", got, "a")
		}
	})
}

// Remove force-kills a running container; containers never removed are
// reported by Leaked, and Close stops the rest.
func TestRemoveAndLeaked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &dockerfake.Fake{}
		defer f.Close()
		first, out := started(t, f, dockerfake.Script{RunUntilKilled: true})
		second, _ := started(t, f, dockerfake.Script{RunUntilKilled: true})
		if err := f.Remove(t.Context(), first); err != nil {
			t.Fatal(err)
		}
		if got := <-out; got != "" {
			t.Errorf("output: got %q", got)
		}
		if got, want := f.Leaked(), []string{second}; !cmp.Equal(got, want) {
			t.Errorf("leaked: got %v, want %v", got, want)
		}
		if _, err := f.Wait(t.Context(), first); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Wait on a removed container: got %v, want fs.ErrNotExist", err)
		}
		if err := f.Remove(t.Context(), first); err != nil {
			t.Errorf("second Remove: %v", err)
		}
		if got := len(f.Removes()); got != 2 {
			t.Errorf("recorded %d removes, want 2", got)
		}
		if got := len(f.Kills()); got != 0 {
			t.Errorf("recorded %d kills, want 0", got)
		}
		f.Close()
		if got := f.Running(); len(got) != 0 {
			t.Errorf("running after Close: %v", got)
		}
	})
}

// Closing the attach stream, or its context ending, ends reads early.
func TestAttachEndsEarly(t *testing.T) {
	for _, how := range []string{"close", "context"} {
		t.Run(how, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &dockerfake.Fake{Script: func(docker.ContainerSpec) dockerfake.Script {
					return dockerfake.Script{RunUntilKilled: true}
				}}
				defer f.Close()
				id, err := f.Create(t.Context(), docker.ContainerSpec{})
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				stream, err := f.Attach(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				if err := f.Start(t.Context(), id); err != nil {
					t.Fatal(err)
				}
				read := make(chan error, 1)
				go func() {
					_, err := io.ReadAll(stream)
					read <- err
				}()
				synctest.Wait()
				if how == "close" {
					stream.Close()
				} else {
					cancel()
				}
				if err := <-read; err == nil {
					t.Error("read ended without an error, want a closed stream")
				}
				if got := f.Running(); len(got) != 1 {
					t.Errorf("the container stopped with its stream: running %v", got)
				}
			})
		})
	}
}

func TestErrors(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name   string
		script dockerfake.Script
		call   func(context.Context, *dockerfake.Fake, string) error
	}{
		{"create", dockerfake.Script{CreateErr: boom}, nil},
		{"attach", dockerfake.Script{AttachErr: boom}, func(ctx context.Context, f *dockerfake.Fake, id string) error {
			_, err := f.Attach(ctx, id)
			return err
		}},
		{"start", dockerfake.Script{StartErr: boom}, func(ctx context.Context, f *dockerfake.Fake, id string) error {
			return f.Start(ctx, id)
		}},
		{"wait", dockerfake.Script{WaitErr: boom}, func(ctx context.Context, f *dockerfake.Fake, id string) error {
			if err := f.Start(ctx, id); err != nil {
				return err
			}
			_, err := f.Wait(ctx, id)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &dockerfake.Fake{Script: func(docker.ContainerSpec) dockerfake.Script { return tc.script }}
				defer f.Close()
				id, err := f.Create(t.Context(), docker.ContainerSpec{})
				if tc.call == nil {
					if !errors.Is(err, boom) {
						t.Errorf("Create: got %v, want %v", err, boom)
					}
					if got := f.Containers(); len(got) != 0 {
						t.Errorf("a failed create recorded %v", got)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if err := tc.call(t.Context(), f, id); !errors.Is(err, boom) {
					t.Errorf("got %v, want %v", err, boom)
				}
			})
		})
	}
}

func TestEnsureImage(t *testing.T) {
	boom := errors.New("manifest unknown")
	f := &dockerfake.Fake{PullErr: func(ref string) error {
		if ref == "bad" {
			return boom
		}
		return nil
	}}
	var progress strings.Builder
	id, err := f.EnsureImage(t.Context(), "good", &progress, docker.PullPolicy{})
	if err != nil || id != dockerfake.ImageID("good") || !strings.HasPrefix(id, "sha256:") {
		t.Errorf("EnsureImage(good): got %q, %v", id, err)
	}
	if got, want := progress.String(), "good exists in the cache.\n"; got != want {
		t.Errorf("progress: got %q, want %q", got, want)
	}
	if _, err := f.EnsureImage(t.Context(), "bad", nil, docker.PullPolicy{}); !errors.Is(err, boom) || !strings.Contains(err.Error(), `"bad"`) {
		t.Errorf("EnsureImage(bad): got %v, want %v naming the image", err, boom)
	}
	if diff := cmp.Diff([]string{"good", "bad"}, f.Pulls()); diff != "" {
		t.Errorf("pulls (-want +got):\n%s", diff)
	}

	f.ImageConfig = func(ref string) docker.ImageConfig { return docker.ImageConfig{WorkingDir: "/" + ref} }
	for _, ref := range []string{"good", id} {
		got, err := f.InspectImage(t.Context(), ref)
		if want := (docker.ImageConfig{ID: id, WorkingDir: "/good"}); err != nil || !cmp.Equal(got, want) {
			t.Errorf("InspectImage(%s): got %+v, %v; want %+v", ref, got, err, want)
		}
	}
	if _, err := f.InspectImage(t.Context(), "bad"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("InspectImage of an image never pulled: got %v, want fs.ErrNotExist", err)
	}
}

func TestCopyFrom(t *testing.T) {
	f := &dockerfake.Fake{Script: func(docker.ContainerSpec) dockerfake.Script {
		return dockerfake.Script{Files: map[string]string{
			"/out/a.txt":     "A",
			"/out/sub/b.txt": "BB",
			"/single":        "S",
		}}
	}}
	id, err := f.Create(t.Context(), docker.ContainerSpec{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path    string
		wantDir bool
		want    map[string]string // entry name → contents ("/" suffix: directory)
	}{
		{"/single", false, map[string]string{"single": "S"}},
		{"single", false, map[string]string{"single": "S"}},
		{"/out", true, map[string]string{"out/": "", "out/a.txt": "A", "out/sub/": "", "out/sub/b.txt": "BB"}},
		{"/out/sub/", true, map[string]string{"sub/": "", "sub/b.txt": "BB"}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			rc, isDir, err := f.CopyFrom(t.Context(), id, tc.path)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			if isDir != tc.wantDir {
				t.Errorf("isDir: got %v, want %v", isDir, tc.wantDir)
			}
			got := map[string]string{}
			tr := tar.NewReader(rc)
			for {
				h, err := tr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(tr)
				got[h.Name] = string(b)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("entries (-want +got):\n%s", diff)
			}
		})
	}
	if _, _, err := f.CopyFrom(t.Context(), id, "/missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing path: got %v, want fs.ErrNotExist", err)
	}
	if _, _, err := f.CopyFrom(t.Context(), "nope", "/single"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing container: got %v, want fs.ErrNotExist", err)
	}
}

func TestLoadImage(t *testing.T) {
	f := &dockerfake.Fake{}
	ctx := t.Context()
	cfg := docker.ImageConfig{Cmd: []string{"sh"}, Env: []string{"A=1"}, WorkingDir: "/w"}
	archive := dockerfake.ImageArchive("orig:tag", cfg)
	id, err := f.LoadImage(ctx, strings.NewReader(string(archive)), "docker-worker/task-image/abc:latest")
	if err != nil || !strings.HasPrefix(id, "sha256:") {
		t.Fatalf("LoadImage: %q, %v", id, err)
	}
	again, _ := (&dockerfake.Fake{}).LoadImage(ctx, strings.NewReader(string(archive)), "x:latest")
	if again != id {
		t.Errorf("IDs differ for one archive: %s, %s", id, again)
	}
	got, err := f.InspectImage(ctx, "docker-worker/task-image/abc:latest")
	cfg.ID = id
	if err != nil || !cmp.Equal(got, cfg) {
		t.Errorf("InspectImage: %+v, %v; want %+v", got, err, cfg)
	}
	if err := f.TagImage(ctx, id, "docker-worker/task-image/abc:sha256-00"); err != nil {
		t.Fatal(err)
	}
	if err := f.TagImage(ctx, "sha256:none", "x:y"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("tagging a missing image: %v", err)
	}
	tags, _ := f.ListTags(ctx, "docker-worker/task-image/abc")
	if want := []string{"docker-worker/task-image/abc:latest", "docker-worker/task-image/abc:sha256-00"}; !cmp.Equal(tags, want) {
		t.Errorf("tags %v, want %v", tags, want)
	}
	if tags, _ := f.ListTags(ctx, "docker-worker/task-image"); len(tags) != 0 {
		t.Errorf("tags of a parent repository: %v", tags)
	}
	f.RemoveTag("docker-worker/task-image/abc:latest")
	if _, err := f.InspectImage(ctx, "docker-worker/task-image/abc:latest"); err == nil {
		t.Error("an untagged reference still inspects")
	}
	if _, err := f.InspectImage(ctx, id); err != nil {
		t.Errorf("by ID: %v", err)
	}
	if !cmp.Equal(f.Loads(), []string{"docker-worker/task-image/abc:latest"}) {
		t.Errorf("loads %v", f.Loads())
	}

	two := dockerfake.ImageArchive("", docker.ImageConfig{Cmd: []string{"a"}}, docker.ImageConfig{Cmd: []string{"b"}})
	if _, err := f.LoadImage(ctx, strings.NewReader(string(two)), "two:latest"); !errors.Is(err, docker.ErrNotOneImage) {
		t.Errorf("two images: %v", err)
	}
	if _, err := f.LoadImage(ctx, strings.NewReader("not a tar archive at all"), "bad:latest"); !errors.Is(err, docker.ErrUnknownArchiveFormat) {
		t.Errorf("not an archive: %v", err)
	}
	f.LoadErr = func(string) error { return errors.New("disk full") }
	if _, err := f.LoadImage(ctx, strings.NewReader(string(archive)), "full:latest"); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("LoadErr: %v", err)
	}
}
