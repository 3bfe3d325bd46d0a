package chainoftrust

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"go.dockerworker.dev/docker-worker/worker/taskerr"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/features/featuretest"
)

func writeKey(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cot.key")
	if err := os.WriteFile(p, []byte(base64.StdEncoding.EncodeToString(data)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseKeys(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	enc := func(b []byte) []byte { return []byte(base64.StdEncoding.EncodeToString(b) + "\n") }
	for name, in := range map[string][]byte{"64-byte secret key": priv, "32-byte seed": priv.Seed()} {
		k, err := ParsePrivateKey(enc(in))
		if err != nil || !k.Equal(priv) {
			t.Errorf("%s: %v", name, err)
		}
	}
	bad := append([]byte{}, priv...)
	bad[40] ^= 1
	for name, in := range map[string][]byte{
		"mismatched halves": enc(bad),
		"short":             enc(priv[:10]),
		"not base64":        []byte("!!!"),
	} {
		if _, err := ParsePrivateKey(in); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if k, err := ParsePublicKey(enc(pub)); err != nil || !k.Equal(pub) {
		t.Errorf("public key: %v", err)
	}
	if _, err := ParsePublicKey(enc(priv)); err == nil {
		t.Error("a private key was accepted as a public key")
	}
}

func run(t *testing.T, ft *featuretest.Task, keyPath string, log string, aborted bool) error {
	t.Helper()
	tf, err := New(keyPath, t.TempDir(), nil).NewTask(ft)
	if err != nil {
		t.Fatal(err)
	}
	var open features.OpenResponse
	if err := tf.(features.Opener).Open(t.Context(), &features.OpenRequest{}, &open); err != nil {
		return err
	}
	io.WriteString(open.LogSinks[0], log)
	err = tf.(features.Finisher).Finish(t.Context(), &features.FinishRequest{Success: !aborted, Aborted: aborted})
	for range 2 {
		if cerr := tf.(features.Cleaner).Cleanup(t.Context()); cerr != nil {
			t.Errorf("cleanup: %v", cerr)
		}
	}
	return err
}

func TestDocumentAndSignature(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	keyPath := writeKey(t, priv)
	def := json.RawMessage(`{"provisionerId":"p","workerType":"w","payload":{"image":"x","command":["<&>"]},"expires":"2031-01-01T00:00:00.000Z"}`)
	expiry := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	ft := &featuretest.Task{ID: "dSlITZ4yQgmvxxAi4A8fHQ", Run: 0, Def: def, Expiry: expiry,
		Info: features.WorkerInfo{WorkerGroup: "random-local-worker", WorkerID: "w1", PublicIP: "127.0.0.1",
			PrivateIP: "169.254.1.1", InstanceID: "test-worker-instance", InstanceType: "r3-superlarge", Region: "us-middle-1a"}}
	ft.Res.SetImage(features.Image{ID: "sha256:abc"})
	// A payload artifact uploaded earlier in the run.
	ft.Artifacts().Upload(t.Context(), features.Upload{Name: "public/xfoo", Size: 4, SHA256: "aa",
		Open: func(context.Context) (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("xfoo")), nil }})
	log := "[taskcluster 2026-01-01 00:00:00.000Z] Task ID: x\r\nHello\r\n"
	if err := run(t, ft, keyPath, log, false); err != nil {
		t.Fatal(err)
	}

	cl, _ := ft.Pub.Get(CertifiedLog)
	zr, _ := gzip.NewReader(bytes.NewReader(cl.Body))
	plain, _ := io.ReadAll(zr)
	logSum := sha256.Sum256([]byte(log))
	if string(plain) != log || cl.ContentType != "text/plain" || cl.ContentEncoding != "gzip" || cl.SHA256 != hex.EncodeToString(logSum[:]) {
		t.Errorf("certified log %+v", cl)
	}
	docArt, _ := ft.Pub.Get(DocumentName)
	sigArt, _ := ft.Pub.Get(SignatureName)
	if docArt.ContentType != "text/plain" || sigArt.ContentType != "application/octet-stream" || len(sigArt.Body) != 64 ||
		!docArt.Expires.Equal(expiry) || !sigArt.Expires.Equal(expiry) {
		t.Errorf("document %+v, signature %+v", docArt.ContentType, sigArt)
	}
	if !ed25519.Verify(pub, docArt.Body, sigArt.Body) {
		t.Fatal("signature does not verify")
	}
	d, err := Verify(docArt.Body, sigArt.Body, pub)
	if err != nil {
		t.Fatal(err)
	}
	want := &Document{
		ChainOfTrustVersion: 1,
		Artifacts: map[string]ArtifactHash{
			"public/xfoo": {SHA256: "aa"},
			CertifiedLog:  {SHA256: hex.EncodeToString(logSum[:])},
		},
		TaskID: "dSlITZ4yQgmvxxAi4A8fHQ", RunID: 0, WorkerGroup: "random-local-worker", WorkerID: "w1",
		Environment: Environment{PublicIPAddress: "127.0.0.1", PrivateIPAddress: "169.254.1.1", ImageHash: "sha256:abc",
			InstanceID: "test-worker-instance", InstanceType: "r3-superlarge", Region: "us-middle-1a"},
	}
	task := d.Task
	d.Task = nil
	if diff := cmp.Diff(want, d); diff != "" {
		t.Errorf("document (-want +got):\n%s", diff)
	}
	var gotTask, wantTask any
	json.Unmarshal(task, &gotTask)
	json.Unmarshal(def, &wantTask)
	if diff := cmp.Diff(wantTask, gotTask); diff != "" {
		t.Errorf("task (-want +got):\n%s", diff)
	}
	// docker-worker's format: 2-space indent, key order, no HTML escaping.
	text := string(docArt.Body)
	if !strings.HasPrefix(text, "{\n  \"chainOfTrustVersion\": 1,\n  \"artifacts\": {") || !strings.Contains(text, `"<&>"`) ||
		strings.HasSuffix(text, "\n") || strings.Index(text, `"environment"`) < strings.Index(text, `"workerId"`) {
		t.Errorf("document text:\n%s", text)
	}
	tampered := bytes.Replace(docArt.Body, []byte("127.0.0.1"), []byte("127.0.0.2"), 1)
	if _, err := Verify(tampered, sigArt.Body, pub); !errors.Is(err, ErrBadSignature) {
		t.Errorf("tampered document: %v", err)
	}
}

func TestSkippedWhenAborted(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	ft := &featuretest.Task{Expiry: time.Now().Add(time.Hour)}
	if err := run(t, ft, writeKey(t, priv), "log\r\n", true); err != nil {
		t.Fatal(err)
	}
	if names := ft.Pub.Names(); len(names) != 0 {
		t.Errorf("artifacts for an aborted run: %v", names)
	}
}

// A missing or broken key is the worker's fault: the task is refused as an
// internal error, and the operator is told once at start.
func TestMissingKeyIsInternalError(t *testing.T) {
	var logs bytes.Buffer
	f := New(filepath.Join(t.TempDir(), "absent.key"), t.TempDir(), slog.New(slog.NewTextHandler(&logs, nil)))
	if err := f.Init(t.Context(), nil); err != nil {
		t.Fatalf("Init: %v (the worker must still start)", err)
	}
	if !strings.Contains(logs.String(), "[alert-operator] chain of trust signing key unusable") {
		t.Errorf("no operator alert at start; log:\n%s", logs.String())
	}
	_, err := f.NewTask(&featuretest.Task{})
	if err == nil || !strings.Contains(err.Error(), "ed25519SigningKeyLocation") {
		t.Fatalf("NewTask: got %v", err)
	}
	if k := taskerr.Classify(err); k != taskerr.InternalErrorKind {
		t.Errorf("resolution %v, want internal-error", k)
	}
}

// A task or indexed image's artifact hash is recorded as docker-worker
// recorded it, "sha256:<hex>", beside the image ID; a registry image has
// none.
func TestImageArtifactHash(t *testing.T) {
	for _, tc := range []struct {
		name string
		img  features.Image
		want Environment
	}{
		{"registry image", features.Image{ID: "sha256:img"}, Environment{ImageHash: "sha256:img"}},
		{"artifact image", features.Image{ID: "sha256:img", ArtifactSHA256: "0123ab"},
			Environment{ImageHash: "sha256:img", ImageArtifactHash: "sha256:0123ab"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pub, priv, _ := ed25519.GenerateKey(rand.Reader)
			ft := &featuretest.Task{ID: "dSlITZ4yQgmvxxAi4A8fHQ", Def: json.RawMessage(`{}`), Expiry: time.Now().Add(time.Hour)}
			ft.Res.SetImage(tc.img)
			if err := run(t, ft, writeKey(t, priv), "log\r\n", false); err != nil {
				t.Fatal(err)
			}
			docArt, _ := ft.Pub.Get(DocumentName)
			sigArt, _ := ft.Pub.Get(SignatureName)
			d, err := Verify(docArt.Body, sigArt.Body, pub)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, d.Environment); diff != "" {
				t.Errorf("environment (-want +got):\n%s", diff)
			}
		})
	}
}
