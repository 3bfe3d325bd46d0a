package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

var liveURL = regexp.MustCompile(`^(https?)://localhost:([0-9]+)/log/([a-zA-Z0-9_-]+)$`)

// artifactTarget returns an artifact's storage type and, for a reference,
// its URL (the queue's artifact-content answer).
func (q *queueEnv) artifactTarget(t *testing.T, taskID string, runID int, name string) (string, string) {
	t.Helper()
	var body struct {
		StorageType string `json:"storageType"`
		URL         string `json:"url"`
	}
	path := fmt.Sprintf("/task/%s/runs/%d/artifact-info/%s", tc.PathEscape(taskID), runID, tc.PathEscape(name))
	if err := q.admin.Request(t.Context(), "queue", http.MethodGet, path, nil, nil, &body); err != nil {
		t.Fatalf("artifact info %s: %v", name, err)
	}
	if body.StorageType != "reference" {
		return body.StorageType, ""
	}
	path = fmt.Sprintf("/task/%s/runs/%d/artifact-content/%s", tc.PathEscape(taskID), runID, tc.PathEscape(name))
	if err := q.admin.Request(t.Context(), "queue", http.MethodGet, path, nil, nil, &body); err != nil {
		t.Fatalf("artifact %s: %v", name, err)
	}
	return body.StorageType, body.URL
}

// waitReference waits until the run is running and name is a reference
// artifact, and returns its URL.
func (q *queueEnv) waitReference(t *testing.T, taskID, name string) string {
	t.Helper()
	for start := time.Now(); time.Since(start) < 2*time.Minute; time.Sleep(50 * time.Millisecond) {
		if _, ok := q.artifacts(t, taskID, 0)[name]; !ok {
			continue
		}
		if st, u := q.artifactTarget(t, taskID, 0, name); st == "reference" {
			return u
		}
		t.Fatalf("%s is not a reference while the task runs", name)
	}
	t.Fatalf("no %s artifact", name)
	return ""
}

func helloLines(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "Hello Number %d\r\n", i)
	}
	return b.String()
}

// local_live_log_test.
func TestLocalLiveLog(t *testing.T) {
	q := startQueue(t, nil)
	cfg := q.workerConfig("livelog")
	startFullWorker(t, q, cfg)

	t.Run("live logging of content", func(t *testing.T) {
		p := shell(`echo "first command!"; i=1; while [ $i -le 1000 ]; do echo "Hello Number $i"; i=$((i+1)); done`, 60)
		id := q.create(t, newTask(cfg, p))
		wantState(t, q.waitRun(t, id, 0, 2*time.Minute), 0, tc.StateCompleted, "")
		mustContain(t, q.logOf(t, id, 0, ""), helloLines(1000))
	})

	t.Run("url contains access token, expires with the task; reader attached mid-run gets the whole log", func(t *testing.T) {
		p := shell(`echo start; i=1; while [ $i -le 30 ]; do echo "Hello Number $i"; i=$((i+1)); sleep 0.1; done; echo end`, 60)
		def := newTask(cfg, p)
		id := q.create(t, def)
		u := q.waitReference(t, id, "public/logs/live.log")
		m := liveURL.FindStringSubmatch(u)
		if m == nil || m[1] != "http" || len(m[3]) != 22 {
			t.Fatalf("live log URL %q", u)
		}
		taskExp, _ := time.Parse(time.RFC3339, def["expires"].(string))
		if a := q.artifacts(t, id, 0)["public/logs/live.log"]; !a.Expires.Equal(taskExp) || a.ContentType != "text/plain; charset=utf-8" {
			t.Errorf("live.log artifact %+v, want expires %v", a, taskExp)
		}
		// Attach while the task runs and read to the end of the log.
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		live, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		wantState(t, q.waitRun(t, id, 0, 2*time.Minute), 0, tc.StateCompleted, "")
		final := q.logOf(t, id, 0, "")
		if string(live) != final {
			t.Errorf("live reader got %d bytes, the final log has %d:\nlive:\n%s\nfinal:\n%s", len(live), len(final), live, final)
		}
		mustContain(t, final, helloLines(30), "Successful task run with exit code: 0")
		if st, _ := q.artifactTarget(t, id, 0, "public/logs/live.log"); st != "link" {
			t.Errorf("live.log is %s after the task, want link", st)
		}
	})

	t.Run("live log at custom place", func(t *testing.T) {
		p := shell("echo custom", 60)
		p["log"] = "private/docker-worker-tests/logs/live.log"
		id := q.create(t, newTask(cfg, p))
		wantState(t, q.waitRun(t, id, 0, 2*time.Minute), 0, tc.StateCompleted, "")
		arts := q.artifacts(t, id, 0)
		for _, n := range []string{"private/docker-worker-tests/logs/live.log", "private/docker-worker-tests/logs/live_backing.log"} {
			if _, ok := arts[n]; !ok {
				t.Errorf("no %s", n)
			}
		}
		for n := range arts {
			if strings.HasPrefix(n, "public/logs/") {
				t.Errorf("unexpected %s", n)
			}
		}
		mustContain(t, q.logOf(t, id, 0, "private/docker-worker-tests/logs/live.log"), "custom")
	})

	t.Run("a stalled reader does not hold up the task", func(t *testing.T) {
		// ~20 MB of output, far more than socket buffers hold.
		p := shell(`i=0; while [ $i -lt 200 ]; do head -c 100000 /dev/zero | tr '\0' 'z'; echo; i=$((i+1)); done; echo done-writing`, 120)
		id := q.create(t, newTask(cfg, p))
		u := q.waitReference(t, id, "public/logs/live.log")
		pu, _ := url.Parse(u)
		stalled, err := net.Dial("tcp", "127.0.0.1:"+pu.Port())
		if err != nil {
			t.Fatal(err)
		}
		defer stalled.Close()
		fmt.Fprintf(stalled, "GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n", pu.Path)
		// Never read from stalled. A well-behaved reader alongside it gets
		// the whole log, and the task finishes.
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		live, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		wantState(t, q.waitRun(t, id, 0, 2*time.Minute), 0, tc.StateCompleted, "")
		final := q.logOf(t, id, 0, "")
		if len(final) < 20_000_000 || string(live) != final {
			t.Errorf("reader beside a stalled one got %d bytes, final log %d", len(live), len(final))
		}
	})
}

// selfSignedCert writes a certificate for localhost and its key.
func selfSignedCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "worker.crt"), filepath.Join(dir, "worker.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// secure_local_live_logging_test: https with certificates, http by default.
func TestSecureLiveLogging(t *testing.T) {
	q := startQueue(t, nil)
	certFile, keyFile, pool := selfSignedCert(t)
	for _, secure := range []bool{true, false} {
		t.Run(fmt.Sprintf("secure=%v", secure), func(t *testing.T) {
			cfg := q.workerConfig(fmt.Sprintf("secure%v", secure))
			if secure {
				cfg.Logging.SecureLiveLogging = true
				cfg.SSL.Certificate, cfg.SSL.Key = certFile, keyFile
			}
			startFullWorker(t, q, cfg)
			id := q.create(t, newTask(cfg, shell("echo secret; sleep 3", 60)))
			u := q.waitReference(t, id, "public/logs/live.log")
			m := liveURL.FindStringSubmatch(u)
			want := map[bool]string{true: "https", false: "http"}[secure]
			if m == nil || m[1] != want {
				t.Fatalf("live log URL %q, want scheme %s", u, want)
			}
			client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
			resp, err := client.Get(u)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			mustContain(t, string(body), "secret")
			wantState(t, q.waitRun(t, id, 0, 2*time.Minute), 0, tc.StateCompleted, "")
		})
	}
}

// secure_local_live_logging_test "tasks not claimed when secure logging
// enabled and missing certs", through the binary: docker-worker logged an
// operator alert and stayed up claiming nothing; this worker refuses to
// start instead (exit 1, naming the config keys and the paths), so a task
// pending for it is never claimed.
func TestSecureLiveLoggingMissingCerts(t *testing.T) {
	dockertestRequire(t)
	bin := workerBinary(t)
	q := startQueue(t, nil)
	cfg := q.workerConfig("nocerts")
	missing := t.TempDir()
	conf := writeConfig(t, cfg)
	replaceInFile(t, conf, "logging: {", "logging: {secureLiveLogging: true, ")
	crt, key := filepath.Join(missing, "absent.crt"), filepath.Join(missing, "absent.key")
	appendFile(t, conf, fmt.Sprintf("ssl: {certificate: %s, key: %s}\n", crt, key))
	id := q.create(t, newTask(cfg, shell("true", 60)))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "run", "--config", conf)
	cmd.Env = append(os.Environ(), "TASKCLUSTER_ROOT_URL=", "TASKCLUSTER_CLIENT_ID=", "TASKCLUSTER_ACCESS_TOKEN=")
	out, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Fatalf("exit %d (%v), want 1; output:\n%s", code, err, out)
	}
	for _, want := range []string{
		"ssl.certificate: " + crt + ": no such file or directory",
		"ssl.key: " + key + ": no such file or directory",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	s, err := q.admin.Status(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Status.Runs) != 1 || s.Status.Runs[0].State != tc.StatePending {
		t.Errorf("task was claimed: %+v", s.Status.Runs)
	}
}

// bulk_log_test: the bulk log is identical to the live log.
func TestBulkLog(t *testing.T) {
	q := startQueue(t, nil)
	cfg := q.workerConfig("bulklog")
	on := true
	cfg.Features["bulkLog"] = config.FeatureConfig{Enabled: &on}
	startFullWorker(t, q, cfg)
	p := shell(`echo "first command!"; i=1; while [ $i -le 1000 ]; do echo "Hello Number $i"; i=$((i+1)); done`, 60)
	p["features"] = map[string]bool{"localLiveLog": true, "bulkLog": true}
	id := q.create(t, newTask(cfg, p))
	wantState(t, q.waitRun(t, id, 0, 2*time.Minute), 0, tc.StateCompleted, "")
	raw, h := q.rawArtifact(t, id, 0, "public/logs/terminal_bulk.log.gz")
	if h.Get("Content-Encoding") != "gzip" {
		t.Errorf("Content-Encoding %q", h.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	bulk, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	live := q.logOf(t, id, 0, "")
	if string(bulk) != live {
		t.Errorf("bulk log (%d bytes) differs from the live log (%d bytes)", len(bulk), len(live))
	}
	mustContain(t, string(bulk), helloLines(1000))
}
