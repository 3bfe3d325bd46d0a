package main

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestResolveBuild(t *testing.T) {
	vcs := func(mainVersion, rev, modified string) *debug.BuildInfo {
		bi := &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Path: "go.dockerworker.dev/docker-worker", Version: mainVersion}}
		if rev != "" {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: "vcs.revision", Value: rev})
		}
		if modified != "" {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: "vcs.modified", Value: modified})
		}
		return bi
	}
	for _, tc := range []struct {
		name            string
		release, commit string
		bi              *debug.BuildInfo
		want            buildStamp
	}{
		{"stamped wins over build info", "1.2.3", "feedface", vcs("v9.9.9", "0123", "false"),
			buildStamp{Version: "1.2.3", Commit: "feedface", GoVersion: "go1.99.1"}},
		{"go run: nothing recorded", "", "", vcs("(devel)", "", ""),
			buildStamp{Version: baseVersion + "-dev", Commit: "unknown", GoVersion: "go1.99.1"}},
		{"go build in a checkout: pseudo-version and revision", "", "", vcs("v0.0.0-20261201142335-a62232e1d0e1+dirty", "a62232e1d0e150f65bbf9f16aff06cedaf2b1f13", "true"),
			buildStamp{Version: baseVersion + "-dev", Commit: "a62232e1d0e150f65bbf9f16aff06cedaf2b1f13", Modified: true, GoVersion: "go1.99.1"}},
		{"pseudo-version after a tag", "", "", vcs("v0.1.1-0.20261201142335-a62232e1d0e1", "a62232e1", "false"),
			buildStamp{Version: baseVersion + "-dev", Commit: "a62232e1", GoVersion: "go1.99.1"}},
		{"go install at a tag", "", "", vcs("v1.4.0", "", ""),
			buildStamp{Version: "1.4.0", Commit: "unknown", GoVersion: "go1.99.1"}},
		{"commit stamped alone", "", "cafe", vcs("(devel)", "beef", ""),
			buildStamp{Version: baseVersion + "-dev", Commit: "cafe", GoVersion: "go1.99.1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := resolveBuild(tc.release, tc.commit, tc.bi); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	if got := resolveBuild("", "", nil); got.Version != baseVersion+"-dev" || got.Commit != "unknown" || got.GoVersion == "" {
		t.Errorf("no build info: %+v", got)
	}
}

func TestVersionCommand(t *testing.T) {
	code, out, errOut := runCLI(t, "version")
	// A test binary is never stamped: the dev version of this source.
	if code != 0 || errOut != "" || !strings.HasPrefix(out, "docker-worker "+baseVersion+"-dev (commit ") || !strings.HasSuffix(out, ")\n") {
		t.Errorf("version: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if version != baseVersion+"-dev" {
		t.Errorf("version = %q, want %q", version, baseVersion+"-dev")
	}
	if s := (buildStamp{Version: "1.2.3", Commit: "abc", Modified: true, GoVersion: "go1.2"}).String(); !strings.HasPrefix(s, "docker-worker 1.2.3 (commit abc, modified; go1.2 ") {
		t.Errorf("String() = %q", s)
	}
}
