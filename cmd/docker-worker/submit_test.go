package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/slugid"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// submit follows the live log while the run is in progress: it waits for
// the run to start, finds the live log reference artifact, and copies the
// stream to its end. The live log server here is a stand-in that writes
// two lines with a pause between them; the queue is the real one.
func TestFollowLiveLog(t *testing.T) {
	e := newTaskEnv(t)
	release := make(chan struct{})
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "first line\n")
		w.(http.Flusher).Flush()
		<-release
		fmt.Fprint(w, "second line\n")
	}))
	defer live.Close()

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

	var out bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- followLiveLog(t.Context(), e.admin, id, "public/logs/custom.log", 20*time.Millisecond, &out)
	}()
	time.Sleep(200 * time.Millisecond) // the first line is out while the task still runs
	close(release)
	if got := <-done; got != 0 {
		t.Fatalf("followLiveLog = %d, want run 0", got)
	}
	if out.String() != "first line\nsecond line\n" {
		t.Errorf("streamed %q", out.String())
	}

	// Nothing to follow once the task is resolved.
	if _, err := run.ReportCompleted(t.Context(), id, 0); err != nil {
		t.Fatal(err)
	}
	if got := followLiveLog(t.Context(), e.admin, id, "public/logs/custom.log", 20*time.Millisecond, &out); got != -1 {
		t.Errorf("followLiveLog on a resolved task = %d", got)
	}
}
