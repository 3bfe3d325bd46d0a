package wiring

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	chainoftrust "go.dockerworker.dev/docker-worker/features/chainOfTrust"
	"go.dockerworker.dev/docker-worker/worker/config"
)

// writeCertPair writes a self-signed certificate and its key into dir.
func writeCertPair(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "live.crt"), filepath.Join(dir, "live.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

// The files the config makes the worker depend on are checked before
// anything starts; every problem names the config key and the path.
func TestCheckRequiredFiles(t *testing.T) {
	dir := t.TempDir()
	goodKey := filepath.Join(dir, "cot.key")
	if err := chainoftrust.EnsureKey(goodKey); err != nil {
		t.Fatal(err)
	}
	badKey := filepath.Join(dir, "bad.key")
	os.WriteFile(badKey, []byte("not a key\n"), 0o600)
	certFile, keyFile := writeCertPair(t, dir)
	otherCert, _ := writeCertPair(t, t.TempDir()) // a certificate that is not keyFile's
	absent := filepath.Join(dir, "absent")
	off := false

	for _, tt := range []struct {
		name string
		mod  func(*config.Config)
		want []string // one substring per problem, in order; none: no error
	}{
		{"usable key", func(c *config.Config) { c.Ed25519SigningKeyLocation = goodKey }, nil},
		{"missing key", func(c *config.Config) { c.Ed25519SigningKeyLocation = absent + ".key" },
			[]string{"ed25519SigningKeyLocation: " + absent + ".key: no such file or directory (the chainOfTrust feature signs with it"}},
		{"key that does not parse", func(c *config.Config) { c.Ed25519SigningKeyLocation = badKey },
			[]string{"ed25519SigningKeyLocation: " + badKey + ": "}},
		{"missing key, chainOfTrust off", func(c *config.Config) {
			c.Ed25519SigningKeyLocation = absent + ".key"
			c.Features = map[string]config.FeatureConfig{chainoftrust.Name: {Enabled: &off}}
		}, nil},
		{"secure live logging with its files", func(c *config.Config) {
			c.Ed25519SigningKeyLocation = goodKey
			c.Logging.SecureLiveLogging = true
			c.SSL.Certificate, c.SSL.Key = certFile, keyFile
		}, nil},
		{"secure live logging without its files", func(c *config.Config) {
			c.Ed25519SigningKeyLocation = goodKey
			c.Logging.SecureLiveLogging = true
			c.SSL.Certificate, c.SSL.Key = absent+".crt", absent+".key"
		}, []string{
			"ssl.certificate: " + absent + ".crt: no such file or directory (logging.secureLiveLogging",
			"ssl.key: " + absent + ".key: no such file or directory (logging.secureLiveLogging",
		}},
		{"secure live logging, certificate and key do not match", func(c *config.Config) {
			c.Ed25519SigningKeyLocation = goodKey
			c.Logging.SecureLiveLogging = true
			c.SSL.Certificate, c.SSL.Key = otherCert, keyFile
		}, []string{"ssl.certificate, ssl.key: " + otherCert + ", " + keyFile + ": tls: "}},
		{"missing files without secure live logging", func(c *config.Config) {
			c.Ed25519SigningKeyLocation = goodKey
			c.SSL.Certificate, c.SSL.Key = absent+".crt", absent+".key"
		}, nil},
		{"everything missing, all reported", func(c *config.Config) {
			c.Ed25519SigningKeyLocation = absent + ".key"
			c.Logging.SecureLiveLogging = true
			c.SSL.Certificate, c.SSL.Key = absent+".crt", absent+".key"
		}, []string{"ed25519SigningKeyLocation: ", "ssl.certificate: ", "ssl.key: "}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			tt.mod(cfg)
			err := CheckRequiredFiles(cfg)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("CheckRequiredFiles = %v, want nil", err)
				}
				return
			}
			mf, ok := errors.AsType[*MissingFilesError](err)
			if !ok {
				t.Fatalf("CheckRequiredFiles = %v, want a *MissingFilesError", err)
			}
			if len(mf.Problems) != len(tt.want) || !slices.EqualFunc(mf.Problems, tt.want, strings.HasPrefix) {
				t.Errorf("problems:\n%s\nwant lines starting with:\n%s", strings.Join(mf.Problems, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// Build refuses to start a worker whose required files are missing, before
// it connects to anything (no Docker client is needed to see it).
func TestBuildRefusesMissingFiles(t *testing.T) {
	cfg := config.Default()
	cfg.RootURL = "http://127.0.0.1:1"
	cfg.Ed25519SigningKeyLocation = filepath.Join(t.TempDir(), "absent.key")
	w, err := Build(t.Context(), cfg, Options{})
	if err == nil {
		w.Close()
		t.Fatal("Build started a worker without its chain-of-trust key")
	}
	if !strings.Contains(err.Error(), "ed25519SigningKeyLocation: "+cfg.Ed25519SigningKeyLocation) {
		t.Errorf("Build = %v, want the key and path named", err)
	}
}
