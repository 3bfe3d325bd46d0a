package e2e

// Ports of docker-worker's interactive_test: a shell into the running task
// container over the docker-exec-websocket-server protocol, reached
// through the private shell.html reference artifact.

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/localqueue"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

const shellArtifact = "private/docker-worker-tests/shell.html"

// anonymousShell lets the test read the private shell artifact without
// signing the request (so that the redirect is not followed).
func anonymousShell(c *localqueue.Config) {
	c.AnonymousScopes = append(c.AnonymousScopes, "queue:get-artifact:"+shellArtifact)
}

func interactiveConfig(q *queueEnv, minTime int) *config.Config {
	cfg := q.workerConfig("interactive")
	cfg.Interactive = config.InteractiveConfig{
		SSL:                    false,
		MinTime:                minTime,
		ExpirationAfterSession: 1,
		ArtifactName:           "private/docker-worker-tests/",
	}
	return cfg
}

func interactivePayload(script string) map[string]any {
	p := shell(script, 120)
	p["features"] = map[string]bool{"interactive": true}
	return p
}

// shellURL waits for the shell artifact and returns where it redirects.
func shellURL(t *testing.T, q *queueEnv, taskID string) *url.URL {
	t.Helper()
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	deadline := time.Now().Add(time.Minute)
	for {
		if a, ok := q.artifacts(t, taskID, 0)[shellArtifact]; ok {
			if a.StorageType != "reference" || a.ContentType != "text/html" {
				t.Errorf("shell artifact: got %s %s, want reference text/html", a.StorageType, a.ContentType)
			}
			if d := time.Until(a.Expires); d > 121*time.Second || d < 60*time.Second {
				t.Errorf("shell artifact expires in %v, want maxRunTime (120 s) from its creation", d)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no shell artifact")
		}
		time.Sleep(100 * time.Millisecond)
	}
	res, err := hc.Get(q.admin.ArtifactURL(taskID, 0, shellArtifact))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("GET %s: %d, want 303", shellArtifact, res.StatusCode)
	}
	u, err := url.Parse(res.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if want := q.rootURL + "/shell/"; u.Scheme+"://"+u.Host+u.Path != want {
		t.Errorf("shell URL %s, want it below %s", u, want)
	}
	if u.Query().Get("v") != "1" || u.Query().Get("taskId") != taskID || u.Query().Get("runId") != "0" {
		t.Errorf("shell URL %s: want v=1, taskId=%s, runId=0", u, taskID)
	}
	return u
}

// catSession opens a cat session and checks it echoes fa ff 0a.
func catSession(ctx context.Context, t *testing.T, socketURL string) (*websocket.Conn, error) {
	t.Helper()
	conn, _, err := websocket.Dial(ctx, socketURL+"?command=cat", nil)
	if err != nil {
		return nil, err
	}
	want := []byte{0xfa, 0xff, 0x0a}
	if err := conn.Write(ctx, websocket.MessageBinary, append([]byte{0}, want...)); err != nil {
		return nil, err
	}
	var got []byte
	for len(got) < len(want) {
		_, m, err := conn.Read(ctx)
		if err != nil {
			return nil, err
		}
		if len(m) > 0 && m[0] == 1 {
			got = append(got, m[1:]...)
		}
	}
	if !bytes.Equal(got, want) {
		t.Errorf("cat echoed %x, want %x", got, want)
	}
	return conn, nil
}

func TestInteractiveCatAndStaysAlive(t *testing.T) {
	q := startQueue(t, anonymousShell)
	cfg := interactiveConfig(q, 2)
	startFullWorker(t, q, cfg)
	taskID := q.create(t, newTask(cfg, interactivePayload("echo started")))
	socket := shellURL(t, q, taskID).Query().Get("socketUrl")
	if !strings.HasPrefix(socket, "ws://localhost:") || !strings.HasSuffix(socket, "/shell.sock") {
		t.Fatalf("socketUrl %q", socket)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	conn, err := catSession(ctx, t, socket)
	if err != nil {
		t.Fatalf("cat session: %v", err)
	}
	// The command is long done and minTime (2 s) passed: the open session
	// keeps the task running.
	time.Sleep(5 * time.Second)
	st, err := q.admin.Status(t.Context(), taskID)
	if err != nil {
		t.Fatal(err)
	}
	if r := st.Status.Runs[0]; r.State != tc.StateRunning {
		t.Fatalf("with a session open: run is %s, want running", r.State)
	}
	conn.Close(websocket.StatusNormalClosure, "")
	s := q.waitRun(t, taskID, 0, time.Minute)
	wantState(t, s, 0, tc.StateCompleted, "completed")
	// Once the task is over the shell is gone.
	if c, err := catSession(ctx, t, socket); err == nil {
		c.CloseNow()
		t.Error("a new session after the task resolved worked")
	}
}

func TestInteractiveExpires(t *testing.T) {
	q := startQueue(t, anonymousShell)
	cfg := interactiveConfig(q, 3)
	startFullWorker(t, q, cfg)
	start := time.Now()
	taskID := q.create(t, newTask(cfg, interactivePayload("exit 0")))
	socket := shellURL(t, q, taskID).Query().Get("socketUrl")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	conn, err := catSession(ctx, t, socket)
	if err != nil {
		t.Fatalf("cat session while the task is alive: %v", err)
	}
	conn.Close(websocket.StatusNormalClosure, "")
	s := q.waitRun(t, taskID, 0, time.Minute)
	wantState(t, s, 0, tc.StateCompleted, "completed")
	if d := time.Since(start); d < 3*time.Second {
		t.Errorf("task resolved after %v, before minTime (3 s)", d)
	}
	if c, err := catSession(ctx, t, socket); err == nil {
		c.CloseNow()
		t.Error("a new session after expiry worked")
	}
}
