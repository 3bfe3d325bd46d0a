package main

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"go.dockerworker.dev/docker-worker/worker/localqueue/server"
)

// Flags given on the command line win over the config file, which wins
// over the flags' defaults.
func TestQueueFlagsOverConfigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.yml")
	if err := os.WriteFile(path, []byte("listen: 10.0.0.1:1\nrootUrl: http://file\ndataDir: /file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		args []string
		want [3]string // listen, rootUrl, dataDir
	}{
		{"file only", []string{"--config", path}, [3]string{"10.0.0.1:1", "http://file", "/file"}},
		{"flags win", []string{"--config", path, "--listen", "127.0.0.1:2", "--root-url", "http://flag", "--data-dir", "/flag"}, [3]string{"127.0.0.1:2", "http://flag", "/flag"}},
		{"one flag", []string{"--config", path, "--data-dir", "/flag"}, [3]string{"10.0.0.1:1", "http://file", "/flag"}},
		{"no file", []string{"--listen", "127.0.0.1:3"}, [3]string{"127.0.0.1:3", "", server.DefaultDataDir()}},
		{"defaults", nil, [3]string{server.DefaultListen, "", server.DefaultDataDir()}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fs := newFlags("queue", "queue [flags]", io.Discard)
			f := addQueueFlags(fs, "config", "")
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			cfg, err := f.queueConfig()
			if err != nil {
				t.Fatal(err)
			}
			if got := [3]string{cfg.Listen, cfg.RootURL, cfg.DataDir}; got != tt.want {
				t.Errorf("listen, rootUrl, dataDir = %q, want %q", got, tt.want)
			}
		})
	}
}
