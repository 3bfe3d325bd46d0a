package locallivelog

import (
	"bufio"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/features/featuretest"
	"go.dockerworker.dev/docker-worker/schemas"
	"go.dockerworker.dev/docker-worker/worker/livelog"
)

var urlPattern = regexp.MustCompile(`^http://localhost:([0-9]+)/log/([a-zA-Z0-9_-]{22})$`)

func TestLiveLog(t *testing.T) {
	srv, err := livelog.Start(livelog.Config{Address: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for _, tc := range []struct{ log, want string }{
		{"", "public/logs/live.log"},
		{"private/docker-worker-tests/logs/live.log", "private/docker-worker-tests/logs/live.log"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			expiry := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
			ft := &featuretest.Task{Pay: &schemas.Payload{Log: tc.log}, Expiry: expiry, Info: features.WorkerInfo{Hostname: "localhost"}}
			tf, err := New(srv, t.TempDir()).NewTask(ft)
			if err != nil {
				t.Fatal(err)
			}
			var open features.OpenResponse
			if err := tf.(features.Opener).Open(t.Context(), &features.OpenRequest{}, &open); err != nil {
				t.Fatal(err)
			}
			sink := open.LogSinks[0]
			io.WriteString(sink, "header\r\n")
			if err := tf.(features.Preparer).Prepare(t.Context(), &features.PrepareRequest{}, &features.PrepareResponse{}); err != nil {
				t.Fatal(err)
			}
			a, ok := ft.Pub.Get(tc.want)
			if !ok || a.Kind != "reference" || a.ContentType != "text/plain; charset=utf-8" || !a.Expires.Equal(expiry) || !urlPattern.MatchString(a.URL) {
				t.Fatalf("live log artifact %+v", a)
			}
			local := strings.Replace(a.URL, "localhost", "127.0.0.1", 1)
			resp, err := http.Get(local)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			if l, _ := br.ReadString('\n'); l != "header\r\n" {
				t.Errorf("first line %q", l)
			}
			io.WriteString(sink, "output\r\n")
			if err := tf.(features.Finisher).Finish(t.Context(), &features.FinishRequest{Success: true}); err != nil {
				t.Fatal(err)
			}
			if rest, _ := io.ReadAll(br); string(rest) != "output\r\n" {
				t.Errorf("rest %q", rest)
			}
			for range 2 {
				if err := tf.(features.Cleaner).Cleanup(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			resp2, err := http.Get(local)
			if err != nil {
				t.Fatal(err)
			}
			resp2.Body.Close()
			if resp2.StatusCode != http.StatusNotFound {
				t.Errorf("after cleanup: %d", resp2.StatusCode)
			}
		})
	}
}

func TestNoServer(t *testing.T) {
	if _, err := New(nil, "").NewTask(&featuretest.Task{}); err == nil {
		t.Error("NewTask without a server succeeded")
	}
}
