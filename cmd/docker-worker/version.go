package main

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
)

// baseVersion is the release line this source is on. A build nobody
// stamped reports it with a "-dev" suffix.
const baseVersion = "0.1.0"

// release and commit are stamped at build time by the release build
// (test/dist.sh):
//
//	go build -ldflags "-X main.release=1.2.3 -X main.commit=<full sha>" ./cmd/docker-worker
//
// Left empty, [version] and `docker-worker version` fall back to the
// build information the Go toolchain records.
var (
	release string
	commit  string
)

// version is the worker version printed in task log headers and by
// `docker-worker version`.
var version = resolveBuild(release, commit, readBuildInfo()).Version

// buildStamp is what a binary knows about where it came from.
type buildStamp struct {
	// Version is the stamped release, a tagged module version (go install
	// ...@v1.2.3), or baseVersion+"-dev".
	Version string
	// Commit is the stamped or recorded VCS revision, "unknown" when the
	// toolchain recorded none (go run, go test, -buildvcs=false).
	Commit string
	// Modified is set when the toolchain recorded uncommitted changes.
	Modified  bool
	GoVersion string
}

func readBuildInfo() *debug.BuildInfo {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return nil
	}
	return bi
}

// resolveBuild combines the stamped values with the toolchain's build
// information (bi may be nil).
func resolveBuild(release, commit string, bi *debug.BuildInfo) buildStamp {
	s := buildStamp{Version: release, Commit: commit, GoVersion: runtime.Version()}
	if bi != nil {
		if bi.GoVersion != "" {
			s.GoVersion = bi.GoVersion
		}
		if s.Version == "" && isReleaseVersion(bi.Main.Version) {
			s.Version = strings.TrimPrefix(bi.Main.Version, "v")
		}
		for _, kv := range bi.Settings {
			switch kv.Key {
			case "vcs.revision":
				if s.Commit == "" {
					s.Commit = kv.Value
				}
			case "vcs.modified":
				s.Modified = kv.Value == "true"
			}
		}
	}
	if s.Version == "" {
		s.Version = baseVersion + "-dev"
	}
	if s.Commit == "" {
		s.Commit = "unknown"
	}
	return s
}

// isReleaseVersion reports whether a main module version the toolchain
// recorded names a release: not "(devel)", and not a pseudo-version (which
// Go 1.24+ records for a plain go build in a checkout: v0.0.0-<time>-<rev>).
func isReleaseVersion(v string) bool {
	if v == "" || v == "(devel)" {
		return false
	}
	pseudo := regexp.MustCompile(`(^|[-.])\d{14}-[0-9a-f]{12}(\+|$)`)
	return !pseudo.MatchString(v)
}

// String is the one line `docker-worker version` prints.
func (s buildStamp) String() string {
	mod := ""
	if s.Modified {
		mod = ", modified"
	}
	return fmt.Sprintf("docker-worker %s (commit %s%s; %s %s/%s)",
		s.Version, s.Commit, mod, s.GoVersion, runtime.GOOS, runtime.GOARCH)
}

func runVersion(_ context.Context, _ []string, stdout, _ io.Writer) int {
	fmt.Fprintln(stdout, resolveBuild(release, commit, readBuildInfo()))
	return 0
}
