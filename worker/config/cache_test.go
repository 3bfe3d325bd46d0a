package config

import (
	"strings"
	"testing"
)

func TestCachePurgeRequestInterval(t *testing.T) {
	if got := Default().Cache.PurgeRequestInterval; got != 60000 {
		t.Errorf("default %d, want 60000", got)
	}
	for _, tc := range []struct {
		yaml string
		want int
		err  string
	}{
		{"cache: {purgeRequestInterval: 0}\n", 0, ""},
		{"cache: {purgeRequestInterval: 300000}\n", 300000, ""},
		{"cache: {purgeRequestInterval: -1}\n", 0, "cache.purgeRequestInterval: must not be negative, got -1"},
	} {
		c, err := Load(write(t, identity+"workerId: w1\n"+tc.yaml), env(nil))
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: error %v, want %q", tc.yaml, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.yaml, err)
		case tc.err == "" && c.Cache.PurgeRequestInterval != tc.want:
			t.Errorf("%q: got %d, want %d", tc.yaml, c.Cache.PurgeRequestInterval, tc.want)
		}
	}
}
