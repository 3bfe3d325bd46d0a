package s3blob

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/internal/apischema"
	"go.dockerworker.dev/docker-worker/worker/localqueue"
	"go.dockerworker.dev/docker-worker/worker/slugid"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// The S3-compatible server test/setup-env.sh starts (versitygw); override
// with DW_TEST_S3_ENDPOINT, DW_TEST_S3_ACCESS_KEY, DW_TEST_S3_SECRET_KEY.
const (
	defaultEndpoint  = "http://127.0.0.1:7070"
	defaultAccessKey = "dwtest"
	defaultSecretKey = "dwtest-secret"
)

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// requireS3 returns a Store on the test bucket, under a fresh prefix. Without
// the server the test is skipped, unless CI is set: then it fails.
func requireS3(t *testing.T) *Store {
	t.Helper()
	endpoint := envOr("DW_TEST_S3_ENDPOINT", defaultEndpoint)
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatalf("DW_TEST_S3_ENDPOINT: %v", err)
	}
	if c, err := net.DialTimeout("tcp", u.Host, 2*time.Second); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("S3 server at %s does not answer (CI is set; test/setup-env.sh starts it): %v", endpoint, err)
		}
		t.Skipf("S3 server at %s does not answer (run test/setup-env.sh): %v", endpoint, err)
	} else {
		c.Close()
	}
	s, err := New(t.Context(), Config{
		Endpoint:        endpoint,
		Bucket:          "docker-worker-test",
		Prefix:          "run-" + slugid.Nice() + "/",
		PathStyle:       true,
		AccessKeyID:     envOr("DW_TEST_S3_ACCESS_KEY", defaultAccessKey),
		SecretAccessKey: envOr("DW_TEST_S3_SECRET_KEY", defaultSecretKey),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureBucket(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s
}

func put(t *testing.T, u string, body []byte, header http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPut, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func TestPresignedRoundTrip(t *testing.T) {
	s := requireS3(t)
	ctx := t.Context()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("hello from a presigned PUT\n"))
	zw.Close()
	key := "task/0/public/logs/live_backing.log"

	if ok, err := s.Exists(ctx, key); err != nil || ok {
		t.Fatalf("Exists before upload = %v, %v", ok, err)
	}
	putURL, err := s.PutURL(ctx, key, localqueue.BlobHeaders{ContentType: "text/plain; charset=utf-8"}, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if r := put(t, putURL, gz.Bytes(), http.Header{"Content-Type": {"application/octet-stream"}}); r.StatusCode == 200 {
		t.Errorf("PUT with another Content-Type than signed = 200, want a refusal")
	}
	r := put(t, putURL, gz.Bytes(), http.Header{"Content-Type": {"text/plain; charset=utf-8"}, "Content-Encoding": {"gzip"}})
	if r.StatusCode != 200 {
		t.Fatalf("PUT presigned = %d", r.StatusCode)
	}
	if ok, err := s.Exists(ctx, key); err != nil || !ok {
		t.Fatalf("Exists after upload = %v, %v", ok, err)
	}
	getURL, err := s.GetURL(ctx, key, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	// A tc client follows the URL, un-gzipping as the worker's tools do.
	var got bytes.Buffer
	ct, err := tc.New(tc.Config{RootURL: "http://127.0.0.1:1", Retries: -1}).Download(ctx, getURL, &got)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != "hello from a presigned PUT\n" || ct != "text/plain; charset=utf-8" {
		t.Errorf("GET = %q (%s)", got.String(), ct)
	}
	if err := s.Put(ctx, "inline", localqueue.BlobHeaders{ContentType: "text/plain"}, []byte("inline bytes")); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.Exists(ctx, "inline"); !ok {
		t.Error("inline object missing after Put")
	}
}

// A Content-Disposition is signed into the PUT URL: the upload must carry
// it, and downloads serve it.
func TestPresignedContentDisposition(t *testing.T) {
	s := requireS3(t)
	ctx := t.Context()
	key := "task/0/public/report.html"
	body := []byte("<html>report</html>")
	putURL, err := s.PutURL(ctx, key, localqueue.BlobHeaders{ContentType: "text/html", ContentDisposition: "attachment"}, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if r := put(t, putURL, body, http.Header{"Content-Type": {"text/html"}}); r.StatusCode == 200 {
		t.Errorf("PUT without the signed Content-Disposition = 200, want a refusal")
	}
	h := http.Header{"Content-Type": {"text/html"}, "Content-Disposition": {"attachment"}, "Content-Encoding": {"identity"}}
	if r := put(t, putURL, body, h); r.StatusCode != 200 {
		t.Fatalf("PUT with the signed headers = %d", r.StatusCode)
	}
	getURL, err := s.GetURL(ctx, key, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(getURL)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(got) != string(body) || resp.Header.Get("Content-Disposition") != "attachment" {
		t.Errorf("GET = %d %q, Content-Disposition %q", resp.StatusCode, got, resp.Header.Get("Content-Disposition"))
	}
}

// The queue in S3 mode: createArtifact hands out a presigned PUT URL, the
// bytes go to the bucket, getArtifact redirects to a presigned GET URL; an
// object artifact goes through the object service to the same bucket.
func TestQueueWithS3(t *testing.T) {
	s := requireS3(t)
	ctx := t.Context()
	schemas := apischema.Open(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	root := "http://" + ln.Addr().String()
	admin := &tc.Credentials{ClientID: "admin", AccessToken: "admin-secret"}
	q, err := localqueue.New(localqueue.Config{
		RootURL:   root,
		Clients:   []localqueue.Client{{ClientID: admin.ClientID, AccessToken: admin.AccessToken, Scopes: []string{"*"}}},
		Blobs:     s,
		ClaimWait: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- localqueue.Serve(sctx, ln, q) }()
	t.Cleanup(func() { cancel(); <-done; q.Close() })

	client := tc.New(tc.Config{RootURL: root, Credentials: admin})
	now := time.Now().UTC()
	def, _ := json.Marshal(map[string]any{
		"taskQueueId": "s3-prov/s3-type",
		"created":     now.Format(time.RFC3339), "deadline": now.Add(time.Hour).Format(time.RFC3339),
		"payload":  map[string]any{},
		"metadata": map[string]any{"name": "s3", "description": "s3 mode", "owner": "t@example.com", "source": "https://example.com"},
	})
	taskID := slugid.Nice()
	if _, err := client.CreateTask(ctx, taskID, def); err != nil {
		t.Fatal(err)
	}
	claims, err := client.ClaimWork(ctx, "s3-prov/s3-type", tc.ClaimWorkRequest{Tasks: 1, WorkerGroup: "wg", WorkerID: "w"})
	if err != nil || len(claims.Tasks) != 1 {
		t.Fatalf("claimWork = %+v, %v", claims, err)
	}
	run := client.WithCredentials(claims.Tasks[0].Credentials)
	exp := now.Add(24 * time.Hour)

	art, err := run.CreateArtifact(ctx, taskID, 0, "public/data.txt", tc.S3Artifact(exp, "text/plain"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(art.PutURL, defaultEndpoint) && os.Getenv("DW_TEST_S3_ENDPOINT") == "" {
		t.Errorf("putUrl %s does not point at the bucket", art.PutURL)
	}
	body := []byte("bytes through S3")
	if err := run.PutArtifact(ctx, art.PutURL, func(context.Context) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }, int64(len(body)), "text/plain", ""); err != nil {
		t.Fatal(err)
	}

	// The redirect, as the queue answers it (303 to a presigned GET).
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(client.ArtifactURL(taskID, 0, "public/data.txt"))
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "X-Amz-Signature=") {
		t.Fatalf("getArtifact = %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if err := schemas.Validate("queue/v1/get-artifact-response.json", rb); err != nil {
		t.Error(err)
	}
	var got bytes.Buffer
	if _, err := client.Download(ctx, client.ArtifactURL(taskID, 0, "public/data.txt"), &got); err != nil {
		t.Fatal(err)
	}
	if got.String() != string(body) {
		t.Errorf("downloaded %q, want %q", got.String(), body)
	}

	// An object artifact, uploaded as the worker does (createArtifact →
	// object createUpload (putUrl) → PUT → finishUpload → finishArtifact):
	// HTML in S3 gets Content-Disposition: attachment, as on AWS.
	objBody := []byte("<html>object bytes through S3</html>")
	err = run.UploadObjectArtifact(ctx, taskID, 0, tc.ObjectUpload{
		Name: "public/obj.txt", ContentType: "text/html", Expires: exp, Size: int64(len(objBody)),
		SHA256: fmt.Sprintf("%x", sha256.Sum256(objBody)),
		Open:   func(context.Context) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(objBody)), nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, err = http.Get(client.ArtifactURL(taskID, 0, "public/obj.txt"))
	if err != nil {
		t.Fatal(err)
	}
	rb, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(rb) != string(objBody) || resp.Header.Get("Content-Disposition") != "attachment" || resp.Header.Get("Content-Type") != "text/html" {
		t.Errorf("object artifact = %q, Content-Type %q, Content-Disposition %q", rb, resp.Header.Get("Content-Type"), resp.Header.Get("Content-Disposition"))
	}
	got.Reset()
	if _, err := client.Download(ctx, client.ArtifactURL(taskID, 0, "public/obj.txt"), &got); err != nil {
		t.Fatal(err)
	}
	if got.String() != string(objBody) {
		t.Errorf("object artifact = %q, want %q", got.String(), objBody)
	}
}
