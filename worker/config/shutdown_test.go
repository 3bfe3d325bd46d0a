package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestShutdownKeys(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		check      func(t *testing.T, c *Config)
		wantErr    []string // each a line of the error; nil when valid
	}{
		{name: "defaults", yaml: "", check: func(t *testing.T, c *Config) {
			s := c.Shutdown
			if s.Enabled || s.SpotTermination || s.AfterIdleSeconds != 300 || s.NodeTerminationPoll != 5000 ||
				s.Command != nil || s.MetadataEndpoint != "" {
				t.Errorf("got %+v", s)
			}
			if c.AfterIdle() != 5*time.Minute || c.NodeTerminationPoll() != 5*time.Second {
				t.Errorf("got %v %v", c.AfterIdle(), c.NodeTerminationPoll())
			}
		}},
		{name: "docker-worker's keys and the new ones", yaml: "shutdown:\n  enabled: true\n  afterIdleSeconds: 5\n" +
			"  nodeTerminationPoll: 1000\n  spotTermination: true\n  metadataEndpoint: http://127.0.0.1:9/\n" +
			"  command: [shutdown, -h, now]\n",
			check: func(t *testing.T, c *Config) {
				s := c.Shutdown
				if !s.Enabled || !s.SpotTermination || s.AfterIdleSeconds != 5 || s.NodeTerminationPoll != 1000 ||
					!slices.Equal(s.Command, []string{"shutdown", "-h", "now"}) || s.MetadataEndpoint != "http://127.0.0.1:9/" {
					t.Errorf("got %+v", s)
				}
			}},
		{name: "bad values", yaml: "shutdown:\n  afterIdleSeconds: 0\n  nodeTerminationPoll: 10\n  command: ['']\n  metadataEndpoint: 169.254.169.254\n",
			wantErr: []string{
				"line 2: shutdown.afterIdleSeconds: must be at least 1, got 0",
				"line 3: shutdown.nodeTerminationPoll: must be at least 100 (ms), got 10",
				"shutdown.command[0]: must name the program to run",
				`line 5: shutdown.metadataEndpoint: "169.254.169.254" is not an http(s) URL`,
			}},
		{name: "unknown key", yaml: "shutdown: {afterIdle: 5}\n", wantErr: []string{"line 1: shutdown.afterIdle: unknown key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The shutdown keys come first, so the wanted lines are theirs.
			c, err := Load(write(t, tc.yaml+identity+"workerId: w1\n"), env(nil))
			if tc.wantErr != nil {
				if err == nil {
					t.Fatal("no error")
				}
				for _, want := range tc.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error lacks %q:\n%v", want, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}
