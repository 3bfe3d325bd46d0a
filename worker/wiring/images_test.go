package wiring

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/features/image"
	"go.dockerworker.dev/docker-worker/worker/localqueue"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// The image feature's queue against the embedded queue: public artifacts
// unsigned, private ones with the run's credentials, stored bytes and
// Content-Encoding handed over as they are, 4xx answers final.
func TestImageQueue(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rootURL := "http://" + ln.Addr().String()
	q, err := localqueue.New(localqueue.Config{RootURL: rootURL, DataDir: t.TempDir(),
		Clients: []localqueue.Client{{ClientID: "admin", AccessToken: "secret", Scopes: []string{"*"}}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- localqueue.Serve(ctx, ln, q) }()
	t.Cleanup(func() { cancel(); <-done })
	admin := tc.New(tc.Config{RootURL: rootURL, Credentials: &tc.Credentials{ClientID: "admin", AccessToken: "secret"}})

	// A completed task holding a public and a private artifact.
	now := time.Now().UTC()
	ts := func(t time.Time) string { return t.Format("2006-01-02T15:04:05.000Z") }
	def := []byte(`{"provisionerId":"p","workerType":"holder","schedulerId":"s","created":"` + ts(now) +
		`","deadline":"` + ts(now.Add(time.Hour)) + `","expires":"` + ts(now.Add(24*time.Hour)) +
		`","scopes":["queue:get-artifact:private/*","index:find-task:images.*"],"routes":["index.images.latest"],"payload":{},"metadata":{"name":"n","description":"d","owner":"o@localhost","source":"https://localhost/"}}`)
	const taskID = "fXq9Yh4sRfOQS1w3i2o5Aw"
	if _, err := admin.CreateTask(t.Context(), taskID, def); err != nil {
		t.Fatal(err)
	}
	claim, err := admin.ClaimWork(t.Context(), "p/holder", tc.ClaimWorkRequest{Tasks: 1, WorkerGroup: "g", WorkerID: "w"})
	if err != nil || len(claim.Tasks) != 1 {
		t.Fatalf("claim: %v", err)
	}
	run := admin.WithCredentials(claim.Tasks[0].Credentials)
	body := []byte("stored bytes")
	for _, name := range []string{"public/image.tar", "private/image.tar"} {
		a, err := run.CreateArtifact(t.Context(), taskID, 0, name, tc.S3Artifact(claim.Tasks[0].Task.Expires, "application/x-tar"))
		if err != nil {
			t.Fatal(err)
		}
		open := func(context.Context) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		if err := run.PutArtifact(t.Context(), a.PutURL, open, int64(len(body)), "application/x-tar", "gzip"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := run.ReportCompleted(t.Context(), taskID, 0); err != nil {
		t.Fatal(err)
	}
	// The run's credentials, as the feature gets them for a task whose
	// scopes allow the private artifact.
	c := claim.Tasks[0].Credentials
	creds := &features.Credentials{ClientID: c.ClientID, AccessToken: c.AccessToken, Certificate: c.Certificate}

	iq := newImageQueue(rootURL)
	if got, err := iq.FindTask(t.Context(), *creds, []string{"index:find-task:images.*"}, "images.latest"); err != nil || got != taskID {
		t.Errorf("FindTask: %q, %v; want %s", got, err, taskID)
	}
	if _, err := iq.FindTask(t.Context(), *creds, []string{"queue:get-artifact:private/*"}, "images.latest"); tc.StatusCode(err) != 403 {
		t.Errorf("FindTask outside the task's scopes: %v, want 403", err)
	}
	for _, tt := range []struct {
		name    string
		creds   *features.Credentials
		path    string
		wantErr bool
	}{
		{"public, unsigned", nil, "public/image.tar", false},
		{"private, signed", creds, "private/image.tar", false},
		{"private, unsigned", nil, "private/image.tar", true},
		{"missing", creds, "public/absent.tar", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dl, err := iq.OpenArtifact(t.Context(), tt.creds, taskID, tt.path)
			if tt.wantErr {
				if !errors.Is(err, image.ErrNoRetry) {
					t.Errorf("error %v, want a final one", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer dl.Body.Close()
			got, _ := io.ReadAll(dl.Body)
			if !bytes.Equal(got, body) || dl.ContentEncoding != "gzip" || dl.Size != int64(len(body)) {
				t.Errorf("body %q, encoding %q, size %d", got, dl.ContentEncoding, dl.Size)
			}
		})
	}
}
