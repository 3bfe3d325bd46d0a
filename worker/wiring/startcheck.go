package wiring

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	chainoftrust "go.dockerworker.dev/docker-worker/features/chainOfTrust"
	"go.dockerworker.dev/docker-worker/worker/config"
)

// MissingFilesError lists the files the configuration makes the worker
// depend on that it cannot use, one problem per line, each naming the
// config key and the path. The worker refuses to start with any of them,
// so that it never claims a task it could not run.
type MissingFilesError struct {
	Problems []string
}

func (e *MissingFilesError) Error() string {
	return "required files missing or unusable:\n" + strings.Join(e.Problems, "\n")
}

// CheckRequiredFiles checks, before anything starts, the files cfg needs:
// the chain-of-trust signing key (ed25519SigningKeyLocation) while the
// chainOfTrust feature is enabled, and the TLS certificate and key
// (ssl.certificate, ssl.key) when logging.secureLiveLogging is on. Every
// problem is reported at once in a [*MissingFilesError]; nil when all can
// be used.
func CheckRequiredFiles(cfg *config.Config) error {
	var problems []string
	if cfg.FeatureEnabled(chainoftrust.Name, true) {
		if p := checkSigningKey(cfg.Ed25519SigningKeyLocation); p != "" {
			problems = append(problems, p)
		}
	}
	if cfg.Logging.SecureLiveLogging {
		problems = append(problems, checkKeyPair(cfg.SSL.Certificate, cfg.SSL.Key,
			"logging.secureLiveLogging serves the live log over TLS with it")...)
	}
	if len(problems) == 0 {
		return nil
	}
	return &MissingFilesError{Problems: problems}
}

// checkSigningKey is the problem with the chain-of-trust key at path ("" when
// it is a usable key).
func checkSigningKey(path string) string {
	const why = "the chainOfTrust feature signs with it; features.chainOfTrust.enabled: false runs without chain of trust"
	if path == "" {
		return "ed25519SigningKeyLocation: not set (" + why + ")"
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("ed25519SigningKeyLocation: %s: %s (%s)", path, fileErr(err), why)
	}
	if _, err := chainoftrust.ParsePrivateKey(data); err != nil {
		return fmt.Sprintf("ed25519SigningKeyLocation: %s: %v (%s)", path, err, why)
	}
	return ""
}

// checkKeyPair are the problems with a TLS certificate and key: each file
// that cannot be read, else a pair that does not load.
func checkKeyPair(certFile, keyFile, why string) []string {
	var problems []string
	for _, f := range []struct{ key, path string }{{"ssl.certificate", certFile}, {"ssl.key", keyFile}} {
		if f.path == "" {
			problems = append(problems, fmt.Sprintf("%s: not set (%s)", f.key, why))
			continue
		}
		if _, err := os.ReadFile(f.path); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %s: %s (%s)", f.key, f.path, fileErr(err), why))
		}
	}
	if len(problems) > 0 {
		return problems
	}
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		return []string{fmt.Sprintf("ssl.certificate, ssl.key: %s, %s: %v (%s)", certFile, keyFile, err, why)}
	}
	return nil
}

// fileErr is err without the path a *fs.PathError repeats.
func fileErr(err error) string {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err.Error()
	}
	return err.Error()
}
