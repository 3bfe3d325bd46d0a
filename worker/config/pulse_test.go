package config

import (
	"strings"
	"testing"
)

func TestPulseKeys(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		wantURL    string
		wantErr    string // "" when valid
	}{
		{name: "absent", yaml: "", wantURL: ""},
		{name: "amqp", yaml: "pulse: {url: amqp://u:hunter2@broker:5672/vh}\n", wantURL: "amqp://u:hunter2@broker:5672/vh"},
		{name: "amqps", yaml: "pulse: {url: amqps://u:p@pulse.example.com/}\n", wantURL: "amqps://u:p@pulse.example.com/"},
		{name: "http", yaml: "pulse: {url: http://u:hunter2@broker/}\n", wantErr: `pulse.url: must be an amqp:// or amqps:// URL, got scheme "http"`},
		{name: "no host", yaml: "pulse: {url: \"amqp:///vh\"}\n", wantErr: "pulse.url: must name the broker's host"},
		{name: "not a URL", yaml: "pulse: {url: \"amqp://u:hunter2@[::1\"}\n", wantErr: "pulse.url: is not a URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(write(t, identity+"workerId: w1\n"+tc.yaml), env(nil))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("the error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Pulse.URL != tc.wantURL {
				t.Errorf("got pulse.url %q, want %q", c.Pulse.URL, tc.wantURL)
			}
		})
	}
}

func TestPulseRedacted(t *testing.T) {
	c := Default()
	c.Pulse.URL = "amqp://user:hunter2@broker:5672/vh"
	if got := c.PulseRedacted(); strings.Contains(got, "hunter2") || !strings.Contains(got, "broker:5672") {
		t.Errorf("got %q, want the URL without its password", got)
	}
}
