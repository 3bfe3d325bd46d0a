package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/localqueue"
	"go.dockerworker.dev/docker-worker/worker/slugid"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// taskEnv is an embedded queue the task command talks to through the
// standard environment variables.
type taskEnv struct {
	admin *tc.Client
}

func newTaskEnv(t *testing.T) *taskEnv {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	root := "http://" + ln.Addr().String()
	q, err := localqueue.New(localqueue.Config{
		RootURL:   root,
		DataDir:   t.TempDir(),
		Clients:   []localqueue.Client{{ClientID: "cli-admin", AccessToken: "cli-secret", Scopes: []string{"*"}}},
		ClaimWait: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- localqueue.Serve(ctx, ln, q) }()
	t.Cleanup(func() { cancel(); <-done; q.Close() })
	t.Setenv(config.EnvRootURL, root)
	t.Setenv(config.EnvClientID, "cli-admin")
	t.Setenv(config.EnvAccessToken, "cli-secret")
	t.Setenv(config.EnvCertificate, "")
	return &taskEnv{admin: tc.New(tc.Config{RootURL: root, Credentials: &tc.Credentials{ClientID: "cli-admin", AccessToken: "cli-secret"}})}
}

func (e *taskEnv) create(t *testing.T, group string, deps ...string) string {
	t.Helper()
	now := time.Now().UTC()
	def := map[string]any{
		"taskQueueId": "cli-prov/cli-type", "taskGroupId": group,
		"created": now.Format(time.RFC3339), "deadline": now.Add(time.Hour).Format(time.RFC3339),
		"dependencies": deps,
		"payload":      map[string]any{"log": "public/logs/custom.log"},
		"metadata":     map[string]any{"name": "cli task", "description": "d", "owner": "o@example.com", "source": "https://example.com"},
	}
	b, _ := json.Marshal(def)
	id := slugid.Nice()
	if _, err := e.admin.CreateTask(t.Context(), id, b); err != nil {
		t.Fatal(err)
	}
	return id
}

func runTaskCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := runTask(t.Context(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestTaskCommand(t *testing.T) {
	e := newTaskEnv(t)
	ctx := t.Context()
	group := slugid.Nice()
	first := e.create(t, group)
	second := e.create(t, group, first)

	// A worker's life: claim, log (gzip-less s3 + link), complete.
	claims, err := e.admin.ClaimWork(ctx, "cli-prov/cli-type", tc.ClaimWorkRequest{Tasks: 1, WorkerGroup: "wg", WorkerID: "w1"})
	if err != nil || len(claims.Tasks) != 1 {
		t.Fatalf("claimWork = %+v, %v", claims, err)
	}
	run := e.admin.WithCredentials(claims.Tasks[0].Credentials)
	exp := time.Now().Add(time.Hour)
	art, err := run.CreateArtifact(ctx, first, 0, "public/logs/backing.log", tc.S3Artifact(exp, "text/plain"))
	if err != nil {
		t.Fatal(err)
	}
	log := "hello from the task log\n"
	if err := run.PutArtifact(ctx, art.PutURL, func(context.Context) (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(log)), nil }, int64(len(log)), "text/plain", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := run.CreateArtifact(ctx, first, 0, "public/logs/custom.log", tc.LinkArtifact(exp, "public/logs/backing.log")); err != nil {
		t.Fatal(err)
	}
	if _, err := run.ReportCompleted(ctx, first, 0); err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		name     string
		args     []string
		wantCode int
		wantOut  []string
	}{
		{"status", []string{"status", first}, 0, []string{"task " + first + ": completed", "scheduled → completed", "wg/w1"}},
		{"status json", []string{"status", "--json", first}, 0, []string{`"state": "completed"`}},
		{"log follows the payload's log link", []string{"log", first}, 0, []string{log}},
		{"artifacts", []string{"artifacts", "--run", "0", first}, 0, []string{"public/logs/backing.log", "public/logs/custom.log", "link"}},
		{"dependent is pending", []string{"status", second}, 0, []string{": pending"}},
		{"cancel", []string{"cancel", second}, 0, []string{": exception", "scheduled → canceled"}},
		{"rerun", []string{"rerun", second}, 0, []string{": pending", "rerun"}},
		{"schedule an already scheduled task", []string{"schedule", second}, 0, []string{": pending"}},
		{"group", []string{"group", group}, 0, []string{first, second, "completed", "pending"}},
		{"unknown task", []string{"status", slugid.Nice()}, 1, nil},
		{"missing id", []string{"status"}, 2, nil},
		{"unknown command", []string{"frobnicate", first}, 2, nil},
		{"no command", nil, 2, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runTaskCLI(t, tt.args...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, out, errOut)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestTaskCommandNeedsRootURL(t *testing.T) {
	t.Setenv(config.EnvRootURL, "")
	code, _, errOut := runTaskCLI(t, "status", slugid.Nice())
	if code != 1 || !strings.Contains(errOut, config.EnvRootURL) {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}
