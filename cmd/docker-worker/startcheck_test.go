package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// run refuses to start (exit 1) when a file its config needs is missing,
// naming the config key and the path, before it claims anything: the
// chain-of-trust key, and the TLS certificate and key of secure live
// logging.
func TestRunRefusesMissingFiles(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "absent-cot.key")
	crt := filepath.Join(dir, "absent.crt")
	tlsKey := filepath.Join(dir, "absent-tls.key")
	p := filepath.Join(dir, "worker.yml")
	body := "rootUrl: http://127.0.0.1:1\n" +
		"taskcluster: {clientId: c, accessToken: t}\n" +
		"provisionerId: p\nworkerType: w\nworkerGroup: g\nworkerId: i\n" +
		"ed25519SigningKeyLocation: " + key + "\n" +
		"logging: {secureLiveLogging: true}\n" +
		"ssl: {certificate: " + crt + ", key: " + tlsKey + "}\n"
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TASKCLUSTER_ROOT_URL", "")
	t.Setenv("TASKCLUSTER_CLIENT_ID", "")
	t.Setenv("TASKCLUSTER_ACCESS_TOKEN", "")
	code, out, errOut := runCLI(t, "run", p)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{
		"docker-worker: required files missing or unusable:\n",
		"\ned25519SigningKeyLocation: " + key + ": no such file or directory",
		"\nssl.certificate: " + crt + ": no such file or directory",
		"\nssl.key: " + tlsKey + ": no such file or directory",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if strings.Contains(out, "claim") {
		t.Errorf("the worker went on to claim:\n%s", out)
	}
}
