package backinglog

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/features"
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

// fakeTask is a features.Task whose publisher records what it was given.
type fakeTask struct {
	def     json.RawMessage
	payload *schemas.Payload
	pub     *recorder
}

func (f *fakeTask) TaskID() string                { return "t" }
func (f *fakeTask) RunID() int                    { return 0 }
func (f *fakeTask) Definition() json.RawMessage   { return f.def }
func (f *fakeTask) Payload() *schemas.Payload     { return f.payload }
func (f *fakeTask) Expires() time.Time            { return time.Unix(1800000000, 0) }
func (f *fakeTask) Logger() *slog.Logger          { return slog.New(slog.DiscardHandler) }
func (f *fakeTask) Log() io.Writer                { return io.Discard }
func (f *fakeTask) Artifacts() features.Publisher { return f.pub }

type recorder struct {
	uploads map[string][]byte
	upload  features.Upload
	links   map[string]string
	fail    error
}

func (r *recorder) Upload(_ context.Context, a features.Upload) error {
	if r.fail != nil {
		return r.fail
	}
	rc, err := a.Open()
	if err != nil {
		return err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	if int64(len(b)) != a.Size {
		return errors.New("size mismatch")
	}
	r.uploads[a.Name] = b
	r.upload = a
	return nil
}
func (r *recorder) Reference(context.Context, string, string, string, time.Time) error { return nil }
func (r *recorder) Link(_ context.Context, name, target string, _ time.Time) error {
	r.links[name] = target
	return nil
}
func (r *recorder) Error(context.Context, string, string, string, time.Time) error { return nil }

func run(t *testing.T, ft *fakeTask, text string) (features.TaskFeature, error) {
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
	rec := &recorder{uploads: map[string][]byte{}, links: map[string]string{}}
	ft := &fakeTask{pub: rec, payload: &schemas.Payload{Log: "public/logs/live.log"}}
	tf, err := run(t, ft, "hello\r\nworld\r\n")
	if err != nil {
		t.Fatal(err)
	}
	gz := rec.uploads["public/logs/live_backing.log"]
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
	if rec.upload.ContentType != "text/plain; charset=utf-8" || rec.upload.ContentEncoding != "gzip" || !rec.upload.Expires.Equal(time.Unix(1800000000, 0)) {
		t.Errorf("upload = %+v", rec.upload)
	}
	if rec.links["public/logs/live.log"] != "public/logs/live_backing.log" {
		t.Errorf("links = %v", rec.links)
	}
	if _, err := os.Stat(tf.(*task).dir); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(tf.(*task).dir)
	if len(entries) != 0 {
		t.Errorf("temp files left behind: %v", entries)
	}
}

func TestMalformedPayloadUsesRawLogName(t *testing.T) {
	rec := &recorder{uploads: map[string][]byte{}, links: map[string]string{}}
	ft := &fakeTask{pub: rec, def: json.RawMessage(`{"payload":{"log":"private/x/live.log","maxRunTime":"bad"}}`)}
	if _, err := run(t, ft, "x"); err != nil {
		t.Fatal(err)
	}
	if _, ok := rec.uploads["private/x/live_backing.log"]; !ok {
		t.Errorf("uploads = %v", rec.uploads)
	}
}

func TestUploadFailureIsReported(t *testing.T) {
	rec := &recorder{uploads: map[string][]byte{}, links: map[string]string{}, fail: errors.New("503")}
	if _, err := run(t, &fakeTask{pub: rec}, "x"); err == nil {
		t.Fatal("Finish succeeded although the upload failed")
	}
}
