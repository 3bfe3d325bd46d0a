package tc_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/test/faultproxy"
	"go.dockerworker.dev/docker-worker/worker/localqueue"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// embeddedQueue serves the embedded queue behind a fault proxy and returns
// the proxy and an admin client that reaches the queue through it. The
// queue's root URL is the proxy's, so its storage URLs go through the
// proxy too.
func embeddedQueue(t *testing.T) (*faultproxy.Proxy, *tc.Client) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p, err := faultproxy.New(faultproxy.Config{Target: "http://" + ln.Addr().String()})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	q, err := localqueue.New(localqueue.Config{RootURL: p.URL(), DataDir: t.TempDir(),
		Clients: []localqueue.Client{{ClientID: "admin", AccessToken: "secret", Scopes: []string{"*"}}}})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- localqueue.Serve(ctx, ln, q) }()
	t.Cleanup(func() { cancel(); <-done })
	admin := tc.New(tc.Config{RootURL: p.URL(), Credentials: &tc.Credentials{ClientID: "admin", AccessToken: "secret"},
		Retries: -1}) // no retries: what the tests show must not depend on them
	return p, admin
}

// createTask creates a task and returns its ID.
func createTask(t *testing.T, admin *tc.Client, workerType string) string {
	t.Helper()
	now := time.Now().UTC()
	ts := func(t time.Time) string { return t.Format("2006-01-02T15:04:05.000Z") }
	def := []byte(`{"provisionerId":"p","workerType":"` + workerType + `","schedulerId":"s","created":"` + ts(now) +
		`","deadline":"` + ts(now.Add(time.Hour)) + `","expires":"` + ts(now.Add(24*time.Hour)) +
		`","payload":{},"metadata":{"name":"n","description":"d","owner":"o@localhost","source":"https://localhost/"}}`)
	const taskID = "fXq9Yh4sRfOQS1w3i2o5Aw"
	if _, err := admin.CreateTask(t.Context(), taskID, def); err != nil {
		t.Fatal(err)
	}
	return taskID
}

// Against the embedded queue, whose Hawk check refuses a nonce it has
// seen: a GET whose answer is lost on a reused connection is resent by
// net/http with the same signature and refused, and the client signs it
// again.
func TestEmbeddedQueueReplayedGet(t *testing.T) {
	p, admin := embeddedQueue(t)
	taskID := createTask(t, admin, "replay")
	if _, err := admin.Status(t.Context(), taskID); err != nil {
		t.Fatal(err)
	}
	before := p.Counts().Forwarded
	p.Queue(faultproxy.DropAnswer)
	st, err := admin.Status(t.Context(), taskID)
	if err != nil {
		t.Fatalf("status over the dropped answer: %v", err)
	}
	if st.Status.TaskID != taskID {
		t.Errorf("status of %q", st.Status.TaskID)
	}
	// The dropped GET, the transport's resend (refused: same nonce) and
	// the freshly signed one.
	if n := p.Counts().Forwarded - before; n != 3 {
		t.Errorf("the queue got %d requests for the status, want 3", n)
	}
}

// An artifact PUT to the embedded queue's storage that drops mid-body is
// retried from the start, and the artifact reads back exactly.
func TestEmbeddedQueueUploadDroppedMidBody(t *testing.T) {
	p, admin := embeddedQueue(t)
	taskID := createTask(t, admin, "upload")
	claim, err := admin.ClaimWork(t.Context(), "p/upload", tc.ClaimWorkRequest{Tasks: 1, WorkerGroup: "g", WorkerID: "w"})
	if err != nil || len(claim.Tasks) != 1 {
		t.Fatalf("claim: %v", err)
	}
	run := admin.WithCredentials(claim.Tasks[0].Credentials)
	a, err := run.CreateArtifact(t.Context(), taskID, 0, "public/data.bin", tc.S3Artifact(claim.Tasks[0].Task.Expires, "application/octet-stream"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(a.PutURL, p.URL()) {
		t.Fatalf("the PUT URL %s does not go through the proxy", a.PutURL)
	}
	content := bytes.Repeat([]byte("0123456789"), 300_000)
	opens := 0
	open := func(context.Context) (io.ReadCloser, error) {
		opens++
		return io.NopCloser(bytes.NewReader(content)), nil
	}
	if err := p.SetRates(faultproxy.Rates{Match: func(r *http.Request) bool { return r.Method == http.MethodPut }}); err != nil {
		t.Fatal(err)
	}
	p.Queue(faultproxy.DropRequestBody, faultproxy.DropAnswer)
	// Retries come from the deadline here, as the worker's uploads get them.
	ctx := tc.RetryUntil(t.Context(), time.Now().Add(time.Minute))
	if err := run.PutArtifact(ctx, a.PutURL, open, int64(len(content)), "application/octet-stream", ""); err != nil {
		t.Fatal(err)
	}
	if opens != 3 {
		t.Errorf("body opened %d times, want 3", opens)
	}
	var got bytes.Buffer
	if _, err := admin.Download(t.Context(), admin.ArtifactURL(taskID, 0, "public/data.bin"), &got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), content) {
		t.Errorf("read back %d bytes, want the %d uploaded", got.Len(), len(content))
	}
}
