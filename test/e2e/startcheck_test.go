package e2e

import (
	"path/filepath"
	"testing"

	chainoftrust "go.dockerworker.dev/docker-worker/features/chainOfTrust"
)

// testSigningKey makes a chain-of-trust signing key for one test: a worker
// refuses to start without one while the chainOfTrust feature is enabled.
func testSigningKey(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cot-signing.key")
	if err := chainoftrust.EnsureKey(p); err != nil {
		t.Fatal(err)
	}
	return p
}
