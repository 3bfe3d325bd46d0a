package config

import (
	"testing"
	"time"
)

func TestParseRelativeTime(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		bad  bool
	}{
		{in: "7 days", want: 7 * 24 * time.Hour},
		{in: "1 day", want: 24 * time.Hour},
		{in: "12 hours", want: 12 * time.Hour},
		{in: "1 day 6 hours", want: 30 * time.Hour},
		{in: "2w", want: 14 * 24 * time.Hour},
		{in: " 30 Minutes ", want: 30 * time.Minute},
		{in: "", bad: true},
		{in: "0 days", bad: true},
		{in: "7", bad: true},
		{in: "7 fortnights", bad: true},
		{in: "-1 day", bad: true},
		{in: "3 months", bad: true},
	} {
		got, err := ParseRelativeTime(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseRelativeTime(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseRelativeTime(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestDockerSaveDefaultsAndValidation(t *testing.T) {
	c := Default()
	if c.DockerSave.Expiration != "7 days" || c.DindImage != "taskcluster/dind-service:v4.0" {
		t.Fatalf("defaults: %+v, %q", c.DockerSave, c.DindImage)
	}
	if got := c.DockerSaveExpiration(); got != 7*24*time.Hour {
		t.Errorf("DockerSaveExpiration = %v", got)
	}
	var keys []string
	bad := func(key, format string, args ...any) { keys = append(keys, key) }
	c.validateDockerSave(bad)
	if len(keys) != 0 {
		t.Errorf("defaults refused: %v", keys)
	}
	c.DockerSave.Expiration = "soon"
	c.DindImage = " "
	c.validateDockerSave(bad)
	if len(keys) != 2 || keys[0] != "dockerSave.expiration" || keys[1] != "dindImage" {
		t.Errorf("refused keys = %v, want dockerSave.expiration and dindImage", keys)
	}
}
