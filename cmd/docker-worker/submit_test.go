package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/slugid"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// chanWriter passes every write on to its channel, so a test sees when
// bytes arrive, not only what arrived in the end.
type chanWriter chan string

func (w chanWriter) Write(p []byte) (int, error) {
	w <- string(p)
	return len(p), nil
}

// submit follows the live log while the run is in progress: it waits for
// the run to start, finds the live log reference artifact, and passes the
// stream on as it comes. The live log server here is a stand-in that
// writes one line and holds the stream open until the test has seen that
// line come through; the queue is the real one.
func TestFollowLiveLog(t *testing.T) {
	e := newTaskEnv(t)
	release := make(chan struct{})
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "first line\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, "second line\n")
	}))
	t.Cleanup(live.Close) // after t.Context() is done, which ends the request

	id := e.create(t, slugid.Nice())
	claims, err := e.admin.ClaimWork(t.Context(), "cli-prov/cli-type", tc.ClaimWorkRequest{Tasks: 1, WorkerGroup: "g", WorkerID: "w"})
	if err != nil || len(claims.Tasks) != 1 {
		t.Fatalf("claim: %v", err)
	}
	run := e.admin.WithCredentials(claims.Tasks[0].Credentials)
	if _, err := run.CreateArtifact(t.Context(), id, 0, "public/logs/custom.log",
		tc.ReferenceArtifact(time.Now().Add(time.Hour), live.URL+"/log/token", "text/plain; charset=utf-8")); err != nil {
		t.Fatal(err)
	}

	writes := make(chanWriter, 16)
	done := make(chan int, 1)
	go func() {
		done <- followLiveLog(t.Context(), e.admin, id, "public/logs/custom.log", 20*time.Millisecond, writes)
	}()
	// The first line must come through while the stream is still open.
	var got strings.Builder
	timeout := time.After(10 * time.Second)
	for !strings.Contains(got.String(), "first line\n") {
		select {
		case s := <-writes:
			got.WriteString(s)
		case r := <-done:
			t.Fatalf("followLiveLog returned %d before the live log ended, having written %q", r, got.String())
		case <-timeout:
			t.Fatalf("the first line was not passed on while the live log was open (got %q)", got.String())
		}
	}
	close(release)
	select {
	case r := <-done:
		if r != 0 {
			t.Fatalf("followLiveLog = %d, want run 0", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("followLiveLog did not return at the end of the live log")
	}
	for len(writes) > 0 {
		got.WriteString(<-writes)
	}
	if got.String() != "first line\nsecond line\n" {
		t.Errorf("streamed %q", got.String())
	}

	// Nothing to follow once the task is resolved.
	if _, err := run.ReportCompleted(t.Context(), id, 0); err != nil {
		t.Fatal(err)
	}
	if r := followLiveLog(t.Context(), e.admin, id, "public/logs/custom.log", 20*time.Millisecond, writes); r != -1 {
		t.Errorf("followLiveLog on a resolved task = %d", r)
	}
}

// Each outcome of submit has its own exit code: 0 completed, 1 failed,
// 2 usage error, 3 exception, 4 not submitted or not followed.
func TestSubmitExitCodes(t *testing.T) {
	e := newTaskEnv(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "task.yml")
	if err := os.WriteFile(file, []byte("taskQueueId: cli-prov/cli-type\npayload: {image: busybox, maxRunTime: 60}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		resolve func(q *tc.Client, id string) error
		want    int
	}{
		{"completed", func(q *tc.Client, id string) error { _, err := q.ReportCompleted(t.Context(), id, 0); return err }, submitCompleted},
		{"failed", func(q *tc.Client, id string) error { _, err := q.ReportFailed(t.Context(), id, 0); return err }, submitFailed},
		{"exception", func(q *tc.Client, id string) error {
			_, err := q.ReportException(t.Context(), id, 0, "malformed-payload")
			return err
		}, submitException},
	} {
		t.Run(c.name, func(t *testing.T) {
			type result struct {
				code        int
				out, errOut string
			}
			done := make(chan result, 1)
			go func() {
				code, out, errOut := runCLI(t, "submit", "--poll", "10ms", file)
				done <- result{code, out, errOut}
			}()
			deadline := time.Now().Add(20 * time.Second)
			var claim tc.TaskClaim
			for {
				claims, err := e.admin.ClaimWork(t.Context(), "cli-prov/cli-type", tc.ClaimWorkRequest{Tasks: 1, WorkerGroup: "g", WorkerID: "w"})
				if err != nil {
					t.Fatal(err)
				}
				if len(claims.Tasks) == 1 {
					claim = claims.Tasks[0]
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("submit created no task")
				}
			}
			if err := c.resolve(e.admin.WithCredentials(claim.Credentials), claim.Status.TaskID); err != nil {
				t.Fatal(err)
			}
			r := <-done
			if r.code != c.want || !strings.Contains(r.errOut, "run 0: "+c.name) {
				t.Errorf("exit %d, want %d; stderr:\n%s", r.code, c.want, r.errOut)
			}
		})
	}

	for _, c := range []struct {
		name string
		args []string
		env  map[string]string
		want int
		msg  string
	}{
		{"no file", []string{"submit"}, nil, submitUsage, "usage: docker-worker submit"},
		{"two files", []string{"submit", file, file}, nil, submitUsage, "usage: docker-worker submit"},
		{"bad flag", []string{"submit", "--bogus", file}, nil, submitUsage, "flag provided but not defined: -bogus"},
		{"unreadable file", []string{"submit", filepath.Join(dir, "missing.yml")}, nil, submitUsage, "missing.yml: no such file"},
		{"unreadable --config", []string{"submit", "--config", filepath.Join(dir, "missing.yml"), file}, nil, submitUsage, "missing.yml: no such file"},
		{"no queue", []string{"submit", file}, map[string]string{config.EnvRootURL: ""}, submitNoQueue, config.EnvRootURL + " is not set"},
		{"refused", []string{"submit", writeFile(t, dir, "past.yml", "taskQueueId: cli-prov/cli-type\ndeadline: '2000-01-01T00:00:00.000Z'\npayload: {}\n")},
			nil, submitNoQueue, "create task:"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			code, _, errOut := runCLI(t, c.args...)
			if code != c.want || !strings.Contains(errOut, c.msg) {
				t.Errorf("exit %d, want %d; stderr lacks %q:\n%s", code, c.want, c.msg, errOut)
			}
		})
	}

	// submit --help documents the table.
	if code, out, _ := runCLI(t, "submit", "--help"); code != 0 || !strings.Contains(out, "exit codes:\n  0  the task completed") ||
		!strings.Contains(out, "\n  3  the task resolved exception\n") {
		t.Errorf("submit --help: exit %d:\n%s", code, out)
	}
}

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
