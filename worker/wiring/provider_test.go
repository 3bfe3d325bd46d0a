package wiring

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.dockerworker.dev/docker-worker/worker/config"
)

func writeProviderFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "worker.yml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfigWithoutProvider(t *testing.T) {
	path := writeProviderFile(t, "rootUrl: http://127.0.0.1:1\ntaskcluster: {clientId: c, accessToken: a}\n"+
		"provisionerId: p\nworkerType: t\nworkerGroup: g\nworkerId: w\n")
	cfg, reg, err := LoadConfig(t.Context(), path, config.LoadOptions{Getenv: func(string) string { return "" }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if reg != nil || cfg.WorkerID != "w" {
		t.Fatalf("registration %v, workerId %q: want none and the file's", reg, cfg.WorkerID)
	}
}

func TestLoadConfigProviderRefusals(t *testing.T) {
	noEnv := config.LoadOptions{Getenv: func(string) string { return "" }}
	// Under worker-runner the runner registers the worker.
	path := writeProviderFile(t, "provider: {providerType: aws, metadataEndpoint: http://127.0.0.1:1}\n")
	runner := noEnv
	runner.RunnerKeys = true
	if _, _, err := LoadConfig(t.Context(), path, runner, nil); err == nil || !strings.Contains(err.Error(), "worker-runner") {
		t.Fatalf("provider under worker-runner = %v, want a refusal", err)
	}
	// A bad provider section is reported before anything is asked.
	path = writeProviderFile(t, "provider: {providerType: static}\n")
	if _, _, err := LoadConfig(t.Context(), path, noEnv, nil); err == nil || !strings.Contains(err.Error(), "provider.staticSecret") {
		t.Fatalf("incomplete static provider = %v", err)
	}
	// Registration that cannot reach worker-manager fails the load.
	path = writeProviderFile(t, "rootUrl: http://127.0.0.1:1\nprovider: {providerType: static, workerPoolID: p/t, workerGroup: g, workerID: w, "+
		"staticSecret: c3RhdGljLXNlY3JldC1mb3ItdGhlLXRlc3Qtd29ya2Vy}\n")
	if _, _, err := LoadConfig(t.Context(), path, noEnv, nil); err == nil || !strings.Contains(err.Error(), "registerWorker") {
		t.Fatalf("unreachable worker-manager = %v, want a registerWorker error", err)
	}
}
