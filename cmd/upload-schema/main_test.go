package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"go.dockerworker.dev/docker-worker/worker/slugid"
)

// The S3-compatible server test/setup-env.sh starts (versitygw); override
// with DW_TEST_S3_ENDPOINT, DW_TEST_S3_ACCESS_KEY, DW_TEST_S3_SECRET_KEY.
const (
	testBucket       = "docker-worker-test"
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

// isolateAWS keeps the machine's AWS configuration out of a test: no shared
// files, no profile, no region, the given static credentials (none when
// empty).
func isolateAWS(t *testing.T, accessKey, secretKey string) {
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	for _, v := range []string{"AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"} {
		t.Setenv(v, "")
	}
	t.Setenv("AWS_ACCESS_KEY_ID", accessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", secretKey)
}

// noEnv is a getenv that finds nothing.
func noEnv(string) string { return "" }

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func runTool(t *testing.T, getenv func(string) string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(t.Context(), args, getenv, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestUsage(t *testing.T) {
	isolateAWS(t, "", "")
	for _, tc := range []struct {
		args   []string
		env    map[string]string
		code   int
		stderr string
	}{
		{nil, nil, 2, "--bucket (or DW_SCHEMA_BUCKET) is required"},
		{[]string{"--bucket", "b", "extra"}, nil, 2, `unexpected arguments ["extra"]`},
		{[]string{"--bogus"}, nil, 2, "flag provided but not defined: -bogus"},
		{[]string{"--bucket", "b", "--dry-run"}, map[string]string{"DW_SCHEMA_PATH_STYLE": "sometimes"}, 2, "DW_SCHEMA_PATH_STYLE"},
		{[]string{"--help"}, nil, 0, "usage: upload-schema --bucket BUCKET"},
	} {
		code, out, errOut := runTool(t, envMap(tc.env), tc.args...)
		if code != tc.code || out != "" || !strings.Contains(errOut, tc.stderr) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit %d and stderr containing %q", tc.args, code, out, errOut, tc.code, tc.stderr)
		}
	}
}

func TestDryRun(t *testing.T) {
	isolateAWS(t, "", "")
	payload, err := os.ReadFile("../../schemas/payload.json")
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runTool(t, noEnv, "--bucket", "schemas.example", "--dry-run")
	want := "would upload payload.json (" + strconv.Itoa(len(payload)) + " bytes, sha256 " + digest(payload) +
		") to s3://schemas.example/docker-worker/v1/payload.json (Content-Type application/json; endpoint AWS, region us-east-1)\n"
	if code != 0 || out != want || errOut != "" {
		t.Errorf("defaults: exit %d, stderr %q\n got %q\nwant %q", code, errOut, out, want)
	}

	// Everything from the environment; flags win over it.
	env := envMap(map[string]string{
		"DW_SCHEMA_BUCKET": "env-bucket", "DW_SCHEMA_REGION": "eu-central-1",
		"DW_SCHEMA_PATH": "/schemas/docker-worker/v1", "DW_SCHEMA_ENDPOINT": "http://127.0.0.1:1",
	})
	code, out, _ = runTool(t, env, "--dry-run")
	if code != 0 || !strings.Contains(out, " to s3://env-bucket/schemas/docker-worker/v1/payload.json (Content-Type application/json; endpoint http://127.0.0.1:1, region eu-central-1)\n") {
		t.Errorf("from env: exit %d, %q", code, out)
	}
	code, out, _ = runTool(t, env, "--dry-run", "--bucket", "flag-bucket", "--path", "", "--region", "ap-south-1")
	if code != 0 || !strings.Contains(out, " to s3://flag-bucket/payload.json (Content-Type application/json; endpoint http://127.0.0.1:1, region ap-south-1)\n") {
		t.Errorf("flags over env: exit %d, %q", code, out)
	}
	// The region of the AWS configuration is used when none is given.
	t.Setenv("AWS_REGION", "us-west-2")
	if code, out, _ = runTool(t, noEnv, "--dry-run", "--bucket", "b"); code != 0 || !strings.Contains(out, "region us-west-2)") {
		t.Errorf("AWS_REGION: exit %d, %q", code, out)
	}
}

func TestDirChecks(t *testing.T) {
	isolateAWS(t, "", "")
	empty := t.TempDir()
	if code, _, errOut := runTool(t, noEnv, "--bucket", "b", "--dry-run", "--dir", empty); code != 1 || !strings.Contains(errOut, "no *.json files in "+empty) {
		t.Errorf("empty dir: exit %d, %q", code, errOut)
	}
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, "a.json"), []byte(`{"type": "object"}`), 0o600)
	os.WriteFile(filepath.Join(bad, "b.json"), []byte(`["not", "an", "object"]`), 0o600)
	os.WriteFile(filepath.Join(bad, "notes.txt"), []byte(`ignored`), 0o600)
	if code, out, errOut := runTool(t, noEnv, "--bucket", "b", "--dry-run", "--dir", bad); code != 1 || out != "" || !strings.Contains(errOut, "b.json is not a JSON schema object") {
		t.Errorf("bad file: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	os.Remove(filepath.Join(bad, "b.json"))
	if code, out, _ := runTool(t, noEnv, "--bucket", "b", "--dry-run", "--dir", bad); code != 0 || !strings.HasPrefix(out, "would upload a.json (18 bytes") || strings.Count(out, "\n") != 1 {
		t.Errorf("good dir: exit %d, %q", code, out)
	}
}

// requireS3 returns the test server's endpoint and a client for checking
// what the tool uploaded, with the test bucket created. Without the server
// the test is skipped, unless CI is set: then it fails.
func requireS3(t *testing.T) (string, *s3.Client) {
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
	isolateAWS(t, envOr("DW_TEST_S3_ACCESS_KEY", defaultAccessKey), envOr("DW_TEST_S3_SECRET_KEY", defaultSecretKey))
	cfg, err := loadConfig(t.Context(), options{})
	if err != nil {
		t.Fatal(err)
	}
	client := newClient(cfg, options{Endpoint: endpoint, PathStyle: true})
	_, err = client.CreateBucket(t.Context(), &s3.CreateBucketInput{Bucket: aws.String(testBucket)})
	var owned *types.BucketAlreadyOwnedByYou
	var exists *types.BucketAlreadyExists
	if err != nil && !errors.As(err, &owned) && !errors.As(err, &exists) {
		t.Fatalf("create bucket %s: %v", testBucket, err)
	}
	return endpoint, client
}

// object returns the bytes and Content-Type stored at key in the test bucket.
func object(ctx context.Context, t *testing.T, client *s3.Client, key string) ([]byte, string) {
	t.Helper()
	got, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer got.Body.Close()
	body, err := io.ReadAll(got.Body)
	if err != nil {
		t.Fatal(err)
	}
	return body, aws.ToString(got.ContentType)
}

func TestUploadToS3(t *testing.T) {
	endpoint, client := requireS3(t)
	ctx := t.Context()
	payload, err := os.ReadFile("../../schemas/payload.json")
	if err != nil {
		t.Fatal(err)
	}

	// The built-in schema, everything from the environment.
	prefix := "upload-schema-" + slugid.Nice() + "/docker-worker/v1/"
	env := envMap(map[string]string{
		"DW_SCHEMA_BUCKET": testBucket, "DW_SCHEMA_ENDPOINT": endpoint,
		"DW_SCHEMA_PATH": prefix, "DW_SCHEMA_PATH_STYLE": "true", "DW_SCHEMA_REGION": "us-east-1",
	})
	code, out, errOut := runTool(t, env)
	want := "uploaded payload.json (" + strconv.Itoa(len(payload)) + " bytes, sha256 " + digest(payload) + ") to s3://" + testBucket + "/" + prefix + "payload.json\n"
	if code != 0 || out != want || errOut != "" {
		t.Fatalf("upload: exit %d, stderr %q\n got %q\nwant %q", code, errOut, out, want)
	}
	body, ct := object(ctx, t, client, prefix+"payload.json")
	if !bytes.Equal(body, payload) || ct != "application/json" {
		t.Errorf("stored %d bytes (equal to schemas/payload.json: %v), Content-Type %q", len(body), bytes.Equal(body, payload), ct)
	}

	// A directory of schemas, by flags; a second upload replaces the first.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "payload.json"), []byte(`{"title": "replaced"}`), 0o600)
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"title": "config"}`), 0o600)
	code, out, errOut = runTool(t, noEnv, "--bucket", testBucket, "--endpoint", endpoint, "--path-style", "--path", prefix, "--dir", dir)
	if code != 0 || errOut != "" || strings.Count(out, "\n") != 2 ||
		!strings.HasPrefix(out, "uploaded config.json (19 bytes") || !strings.Contains(out, "\nuploaded payload.json (21 bytes") {
		t.Fatalf("upload --dir: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	for name, want := range map[string]string{"payload.json": `{"title": "replaced"}`, "config.json": `{"title": "config"}`} {
		if body, ct := object(ctx, t, client, prefix+name); string(body) != want || ct != "application/json" {
			t.Errorf("%s: %q, Content-Type %q", name, body, ct)
		}
	}
}

func TestUploadFailures(t *testing.T) {
	endpoint, _ := requireS3(t)
	missing := "dw-missing-" + digest([]byte(slugid.Nice()))[:16]
	code, out, errOut := runTool(t, noEnv, "--bucket", missing, "--endpoint", endpoint, "--path-style")
	if code != 1 || out != "" || !strings.Contains(errOut, "upload payload.json to s3://"+missing+"/docker-worker/v1/payload.json: ") || !strings.Contains(errOut, "NoSuchBucket") {
		t.Errorf("missing bucket: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// Wrong credentials are refused by the server, not silently ignored.
	t.Setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
	code, _, errOut = runTool(t, noEnv, "--bucket", testBucket, "--endpoint", endpoint, "--path-style", "--path", "upload-schema-denied/")
	if code != 1 || !strings.Contains(errOut, "upload payload.json to s3://"+testBucket+"/upload-schema-denied/payload.json: ") {
		t.Errorf("bad secret: exit %d, stderr %q", code, errOut)
	}
}
