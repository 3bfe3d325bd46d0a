package main

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	chainoftrust "go.dockerworker.dev/docker-worker/features/chainOfTrust"
)

// writeSet writes a signed chain-of-trust set for the given artifact
// contents into a new directory, with the signing key file beside it.
func writeSet(t *testing.T, arts map[string]string) (dir, keyFile, pubFile string) {
	t.Helper()
	base := t.TempDir()
	keyFile = filepath.Join(base, "cot.key")
	code, pubOut, errOut := runCLI(t, "cot", "keygen", "--out", keyFile)
	if code != 0 {
		t.Fatalf("keygen: %d %s", code, errOut)
	}
	pubFile = filepath.Join(base, "cot.pub")
	os.WriteFile(pubFile, []byte(pubOut), 0o600)
	if code, again, _ := runCLI(t, "cot", "pubkey", "--key", keyFile); code != 0 || again != pubOut {
		t.Fatalf("pubkey: %d %q, keygen printed %q", code, again, pubOut)
	}
	keyData, _ := os.ReadFile(keyFile)
	key, err := chainoftrust.ParsePrivateKey(keyData)
	if err != nil {
		t.Fatal(err)
	}
	dir = filepath.Join(base, "set")
	doc := &chainoftrust.Document{ChainOfTrustVersion: 1, Artifacts: map[string]chainoftrust.ArtifactHash{},
		Task: []byte(`{}`), TaskID: "T", WorkerGroup: "g", WorkerID: "w"}
	for name, body := range arts {
		sum := sha256.Sum256([]byte(body))
		doc.Artifacts[name] = chainoftrust.ArtifactHash{SHA256: hex.EncodeToString(sum[:])}
		p := filepath.Join(dir, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(body), 0o600)
	}
	body, err := doc.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "public"), 0o755)
	os.WriteFile(filepath.Join(dir, "public", "chain-of-trust.json"), body, 0o600)
	os.WriteFile(filepath.Join(dir, "public", "chain-of-trust.json.sig"), ed25519.Sign(key, body), 0o600)
	return dir, keyFile, pubFile
}

func TestCotVerify(t *testing.T) {
	arts := map[string]string{"public/logs/certified.log": "log\r\n", "public/xfoo": "xfoo\n"}

	t.Run("good", func(t *testing.T) {
		dir, _, pub := writeSet(t, arts)
		code, out, errOut := runCLI(t, "cot", "verify", "--public-key", pub, dir)
		if code != 0 || !strings.Contains(out, "signature ok: task T") || !strings.Contains(out, "2 verified, 0 missing, 0 failed") {
			t.Errorf("exit %d\n%s%s", code, out, errOut)
		}
	})
	t.Run("tampered artifact", func(t *testing.T) {
		dir, _, pub := writeSet(t, arts)
		os.WriteFile(filepath.Join(dir, "public", "xfoo"), []byte("evil\n"), 0o600)
		code, out, _ := runCLI(t, "cot", "verify", "--public-key", pub, dir)
		if code != 1 || !strings.Contains(out, "MISMATCH  public/xfoo") {
			t.Errorf("exit %d\n%s", code, out)
		}
	})
	t.Run("tampered document", func(t *testing.T) {
		dir, _, pub := writeSet(t, arts)
		p := filepath.Join(dir, "public", "chain-of-trust.json")
		b, _ := os.ReadFile(p)
		os.WriteFile(p, []byte(strings.Replace(string(b), `"T"`, `"U"`, 1)), 0o600)
		code, _, errOut := runCLI(t, "cot", "verify", "--public-key", pub, dir)
		if code != 1 || !strings.Contains(errOut, "signature does not match") {
			t.Errorf("exit %d: %s", code, errOut)
		}
	})
	t.Run("other key", func(t *testing.T) {
		dir, _, _ := writeSet(t, arts)
		_, _, otherPub := writeSet(t, nil)
		if code, _, _ := runCLI(t, "cot", "verify", "--public-key", otherPub, dir); code != 1 {
			t.Errorf("exit %d with another worker's key", code)
		}
	})
	t.Run("missing artifact", func(t *testing.T) {
		dir, _, pub := writeSet(t, arts)
		os.Remove(filepath.Join(dir, "public", "xfoo"))
		if code, out, _ := runCLI(t, "cot", "verify", "--public-key", pub, dir); code != 1 || !strings.Contains(out, "missing   public/xfoo") {
			t.Errorf("exit %d\n%s", code, out)
		}
		if code, _, _ := runCLI(t, "cot", "verify", "--allow-missing", "--public-key", pub, dir); code != 0 {
			t.Errorf("--allow-missing: exit %d", code)
		}
	})
	t.Run("usage", func(t *testing.T) {
		if code, _, _ := runCLI(t, "cot", "verify", "somedir"); code != 2 {
			t.Errorf("no key: exit %d", code)
		}
		if code, _, errOut := runCLI(t, "cot"); code != 2 || !strings.Contains(errOut, "usage: docker-worker cot") {
			t.Errorf("bare cot: exit %d %q", code, errOut)
		}
		if code, _, _ := runCLI(t, "cot", "keygen", "--out", filepath.Join(t.TempDir())); code != 1 {
			t.Errorf("keygen over an existing path: exit %d", code)
		}
	})
}
