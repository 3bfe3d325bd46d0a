package backinglog

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/features/featuretest"
	"go.dockerworker.dev/docker-worker/schemas"
)

func TestNames(t *testing.T) {
	for _, tc := range []struct{ in, live, backing string }{
		{"", "public/logs/live.log", "public/logs/live_backing.log"},
		{"private/docker-worker-tests/logs/live.log", "private/docker-worker-tests/logs/live.log", "private/docker-worker-tests/logs/live_backing.log"},
		{"apple/banana.log.txt", "apple/banana.log.txt", "apple/banana.log_backing.txt"},
		{"noext", "noext", "noext_backing"},
	} {
		live, backing := Names(tc.in)
		if live != tc.live || backing != tc.backing {
			t.Errorf("Names(%q) = %q, %q; want %q, %q", tc.in, live, backing, tc.live, tc.backing)
		}
	}
}

func run(t *testing.T, ft *featuretest.Task, text string) (features.TaskFeature, error) {
	t.Helper()
	tf, err := New(t.TempDir()).NewTask(ft)
	if err != nil {
		t.Fatal(err)
	}
	var resp features.OpenResponse
	if err := tf.(features.Opener).Open(t.Context(), &features.OpenRequest{}, &resp); err != nil {
		t.Fatal(err)
	}
	for _, s := range resp.LogSinks {
		io.WriteString(s, text)
	}
	err = tf.(features.Finisher).Finish(t.Context(), &features.FinishRequest{})
	if cerr := tf.(features.Cleaner).Cleanup(t.Context()); cerr != nil {
		t.Errorf("cleanup: %v", cerr)
	}
	if cerr := tf.(features.Cleaner).Cleanup(t.Context()); cerr != nil {
		t.Errorf("second cleanup: %v", cerr)
	}
	return tf, err
}

func TestUploadsGzipAndLinks(t *testing.T) {
	ft := &featuretest.Task{Pay: &schemas.Payload{Log: "public/logs/live.log"}, Expiry: time.Unix(1800000000, 0)}
	tf, err := run(t, ft, "hello\r\nworld\r\n")
	if err != nil {
		t.Fatal(err)
	}
	up, _ := ft.Pub.Get("public/logs/live_backing.log")
	gz := up.Body
	if len(gz) < 10 || gz[9] != 3 {
		t.Fatalf("gzip header OS byte: % x", gz[:min(len(gz), 10)])
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(zr)
	if string(plain) != "hello\r\nworld\r\n" {
		t.Errorf("log = %q", plain)
	}
	if up.ContentType != "text/plain; charset=utf-8" || up.ContentEncoding != "gzip" || !up.Expires.Equal(time.Unix(1800000000, 0)) {
		t.Errorf("upload = %+v", up)
	}
	if l, _ := ft.Pub.Get("public/logs/live.log"); l.Kind != "link" || l.Target != "public/logs/live_backing.log" {
		t.Errorf("live.log = %+v", l)
	}
	if _, err := os.Stat(tf.(*task).Dir); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(tf.(*task).Dir)
	if len(entries) != 0 {
		t.Errorf("temp files left behind: %v", entries)
	}
}

func TestMalformedPayloadUsesRawLogName(t *testing.T) {
	ft := &featuretest.Task{Def: json.RawMessage(`{"payload":{"log":"private/x/live.log","maxRunTime":"bad"}}`)}
	if _, err := run(t, ft, "x"); err != nil {
		t.Fatal(err)
	}
	if _, ok := ft.Pub.Get("private/x/live_backing.log"); !ok {
		t.Errorf("uploads = %v", ft.Pub.Artifacts)
	}
}

func TestUploadFailureIsReported(t *testing.T) {
	ft := &featuretest.Task{}
	ft.Pub.Fail = errors.New("503")
	if _, err := run(t, ft, "x"); err == nil {
		t.Fatal("Finish succeeded although the upload failed")
	}
}
