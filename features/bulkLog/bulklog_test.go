package bulklog

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/features/featuretest"
)

func TestBulkLog(t *testing.T) {
	dir := t.TempDir()
	expiry := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	ft := &featuretest.Task{Expiry: expiry}
	tf, err := New(dir).NewTask(ft)
	if err != nil {
		t.Fatal(err)
	}
	var open features.OpenResponse
	if err := tf.(features.Opener).Open(t.Context(), &features.OpenRequest{}, &open); err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for i := range 1000 {
		line := fmt.Sprintf("Hello Number %d\r\n", i)
		io.WriteString(open.LogSinks[0], line)
		want.WriteString(line)
	}
	if err := tf.(features.Finisher).Finish(t.Context(), &features.FinishRequest{Aborted: true}); err != nil {
		t.Fatal(err)
	}
	a, ok := ft.Pub.Get("public/logs/terminal_bulk.log.gz")
	if !ok || a.ContentEncoding != "gzip" || a.ContentType != "text/plain; charset=utf-8" || !a.Expires.Equal(expiry) || a.SHA256 != "" {
		t.Fatalf("bulk log %+v", a)
	}
	zr, err := gzip.NewReader(bytes.NewReader(a.Body))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(zr)
	if string(got) != want.String() {
		t.Errorf("bulk log differs from what was written")
	}
	for range 2 {
		if err := tf.(features.Cleaner).Cleanup(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
}
