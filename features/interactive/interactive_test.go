package interactive

import (
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/features/featuretest"
	"go.dockerworker.dev/docker-worker/schemas"
	"go.dockerworker.dev/docker-worker/worker/docker"
)

type noExec struct{}

func (noExec) Exec(context.Context, string, docker.ExecOptions) (Process, error) {
	return nil, errors.New("no exec in unit tests")
}

func TestShellURL(t *testing.T) {
	got := ShellURL("https://tc.example.com", "wss://w1.example.com:32800/tok/shell.sock", "TASK", 2)
	want := "https://tc.example.com/shell/?v=1&socketUrl=wss%3A%2F%2Fw1.example.com%3A32800%2Ftok%2Fshell.sock&taskId=TASK&runId=2"
	if got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
}

func TestArtifactExpiry(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		maxRunTime int
		expires    time.Time
		want       time.Time
	}{
		// maxRunTime is seconds (docker-worker added it as milliseconds).
		{"maxRunTime first", 3600, now.Add(24 * time.Hour), now.Add(time.Hour)},
		{"task expiry first", 3600, now.Add(time.Minute), now.Add(time.Minute)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			task := &featuretest.Task{Pay: &schemas.Payload{MaxRunTime: tc.maxRunTime}, Expiry: tc.expires}
			if got := ArtifactExpiry(now, task); !got.Equal(tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestTaskPhases(t *testing.T) {
	f := New(Config{
		MinTime:        time.Hour,
		ArtifactPrefix: "private/docker-worker-tests/",
		TempDir:        t.TempDir(),
		Server:         ServerConfig{Address: "127.0.0.1"},
	}, noExec{})
	t.Cleanup(func() { _ = f.Close() })
	tk := &featuretest.Task{
		ID: "TASKID", Run: 1,
		Pay:    &schemas.Payload{MaxRunTime: 600},
		Expiry: time.Now().Add(48 * time.Hour),
		Info:   features.WorkerInfo{RootURL: "https://tc.example.com", Hostname: "worker.example.com"},
	}
	tf, err := f.NewTask(tk)
	if err != nil {
		t.Fatalf("NewTask: %v", err)
	}
	k := tf.(*task)
	ctx := t.Context()
	var resp features.PrepareResponse
	if err := k.Prepare(ctx, &features.PrepareRequest{}, &resp); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if diff := cmp.Diff([]string{"/bin/sh", "-c", wrapperScript, "interactive-wrapper"}, resp.Entrypoint); diff != "" || !resp.WrapImageEntrypoint {
		t.Errorf("entrypoint (-want +got):\n%s (wrap %v)", diff, resp.WrapImageEntrypoint)
	}
	if len(resp.Mounts) != 1 || resp.Mounts[0].Target != MountPoint || !resp.Mounts[0].ReadOnly {
		t.Fatalf("mounts: got %+v, want one read-only at %s", resp.Mounts, MountPoint)
	}
	holdPath := filepath.Join(resp.Mounts[0].Source, holdFile)
	if _, err := os.Stat(holdPath); err != nil {
		t.Errorf("hold file before the container starts: %v", err)
	}

	before := time.Now()
	if err := k.Started(ctx, &features.StartedRequest{ContainerID: "c1"}); err != nil {
		t.Fatalf("Started: %v", err)
	}
	a, ok := tk.Pub.Get("private/docker-worker-tests/shell.html")
	if !ok {
		t.Fatalf("no shell artifact; have %v", tk.Pub.Names())
	}
	if a.Kind != "reference" || a.ContentType != ContentType {
		t.Errorf("artifact: got kind %q type %q, want reference %q", a.Kind, a.ContentType, ContentType)
	}
	if lo, hi := before.Add(600*time.Second), time.Now().Add(600*time.Second); a.Expires.Before(lo) || a.Expires.After(hi) {
		t.Errorf("expires %v, want maxRunTime (600 s) from now", a.Expires)
	}
	u, err := url.Parse(a.URL)
	if err != nil {
		t.Fatalf("artifact URL %q: %v", a.URL, err)
	}
	q := u.Query()
	if u.Scheme+"://"+u.Host+u.Path != "https://tc.example.com/shell/" || q.Get("v") != "1" || q.Get("taskId") != "TASKID" || q.Get("runId") != "1" {
		t.Errorf("artifact URL: got %s", a.URL)
	}
	socket := q.Get("socketUrl")
	if !strings.HasPrefix(socket, "ws://worker.example.com:") || !strings.HasSuffix(socket, SocketPath) {
		t.Errorf("socketUrl: got %s, want ws://worker.example.com:<port>/<token>/shell.sock", socket)
	}
	token := strings.TrimSuffix(socket[strings.LastIndex(socket[:len(socket)-len(SocketPath)], "/")+1:], SocketPath)
	if len(token) != 22 {
		t.Errorf("token %q: got %d characters, want 22", token, len(token))
	}
	if k.srv.target(token) == nil {
		t.Error("the token is not registered")
	}

	if err := k.Cleanup(ctx); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if k.srv.target(token) != nil {
		t.Error("the token is still registered after Cleanup")
	}
	if _, err := os.Stat(holdPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("hold directory after Cleanup: %v", err)
	}
	if err := k.Cleanup(ctx); err != nil {
		t.Errorf("second Cleanup: %v", err)
	}
}

func TestServerTLSCertificateMissing(t *testing.T) {
	f := New(Config{Server: ServerConfig{CertFile: "/nonexistent.crt", KeyFile: "/nonexistent.key"}}, noExec{})
	tf, err := f.NewTask(&featuretest.Task{})
	if err != nil {
		t.Fatalf("NewTask: %v", err)
	}
	err = tf.(*task).Prepare(t.Context(), &features.PrepareRequest{}, &features.PrepareResponse{})
	if err == nil || !strings.Contains(err.Error(), "TLS certificate") {
		t.Errorf("Prepare: got %v, want a TLS certificate error", err)
	}
}
