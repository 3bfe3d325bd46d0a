package e2e

import (
	"encoding/hex"
	"net"
	"net/url"
	"os"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/localqueue"
	"go.dockerworker.dev/docker-worker/worker/localqueue/s3blob"
	"go.dockerworker.dev/docker-worker/worker/slugid"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// The S3-compatible server test/setup-env.sh starts (versitygw), as the
// queue's own S3 tests use it; DW_TEST_S3_* override.
func s3Store(t *testing.T) *s3blob.Store {
	t.Helper()
	env := func(k, def string) string {
		if v := os.Getenv(k); v != "" {
			return v
		}
		return def
	}
	endpoint := env("DW_TEST_S3_ENDPOINT", "http://127.0.0.1:7070")
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", u.Host, 2*time.Second); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("S3 server at %s does not answer (CI is set; test/setup-env.sh starts it): %v", endpoint, err)
		}
		t.Skipf("S3 server at %s does not answer (run test/setup-env.sh): %v", endpoint, err)
	} else {
		c.Close()
	}
	s, err := s3blob.New(t.Context(), s3blob.Config{
		Endpoint: endpoint, Bucket: "docker-worker-test", Prefix: "e2e-" + slugid.Nice() + "/", PathStyle: true,
		AccessKeyID: env("DW_TEST_S3_ACCESS_KEY", "dwtest"), SecretAccessKey: env("DW_TEST_S3_SECRET_KEY", "dwtest-secret"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureBucket(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s
}

// With the embedded queue keeping artifact bytes in S3 (versitygw), the
// worker's uploads go straight to presigned S3 URLs: content, gzip
// encoding (the exact bytes) and the log all read back from S3.
func TestArtifactsThroughS3(t *testing.T) {
	dockertestRequire(t)
	store := s3Store(t)
	q := startQueue(t, func(c *localqueue.Config) { c.Blobs = store })
	cfg := q.workerConfig("s3art")
	startFullWorker(t, q, cfg)
	p := shell("echo xfoo > /xfoo.txt && head -c 200000 /dev/urandom > /blob.zst && echo through-s3", 60)
	p["artifacts"] = map[string]any{
		"public/xfoo.txt": map[string]any{"type": "file", "path": "/xfoo.txt"},
		"public/blob.zst": map[string]any{"type": "file", "path": "/blob.zst"},
	}
	id := q.create(t, newTask(cfg, p))
	wantState(t, q.waitRun(t, id, 0, 2*time.Minute), 0, tc.StateCompleted, "")

	raw, h := q.rawArtifact(t, id, 0, "public/xfoo.txt")
	if got := hex.EncodeToString(raw); got != "1f8b0800000000000003ab48cbcfe70200a7e6f65005000000" || h.Get("Content-Encoding") != "gzip" {
		t.Errorf("xfoo.txt from S3: %s (Content-Encoding %q)", got, h.Get("Content-Encoding"))
	}
	if got := q.logOf(t, id, 0, "public/xfoo.txt"); got != "xfoo\n" {
		t.Errorf("xfoo.txt = %q", got)
	}
	if raw, _ := q.rawArtifact(t, id, 0, "public/blob.zst"); len(raw) != 200000 {
		t.Errorf("blob.zst has %d bytes", len(raw))
	}
	mustContain(t, q.logOf(t, id, 0, ""), "through-s3")
}
