package worker_test

// Runner-tier tests of the capabilities and features that change the
// container's privileges: the real worker, the embedded queue and the
// scripted Docker, in fake time.

import (
	"slices"
	"strings"
	"testing"
	"testing/synctest"

	"go.dockerworker.dev/docker-worker/features"
	allowptrace "go.dockerworker.dev/docker-worker/features/allowPtrace"
	"go.dockerworker.dev/docker-worker/features/capabilities"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

func TestAllowPtrace(t *testing.T) {
	for _, tc := range []struct {
		name    string
		scopes  []string
		state   string
		wantCap bool
		wantLog string
	}{
		{name: "with scope", scopes: []string{"docker-worker:feature:allowPtrace"}, state: "completed", wantCap: true},
		{name: "with star scope", scopes: []string{"docker-worker:feature:*"}, state: "completed", wantCap: true},
		{name: "without scope", scopes: []string{"docker-worker:feature:other"}, state: "failed",
			wantLog: "Insufficient scopes to use 'allowPtrace' feature.  Try adding docker-worker:feature:allowPtrace to the .scopes array."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := start(t, setup{extra: []features.Feature{allowptrace.New()}})
				p := payload(60, "true")
				p["features"] = map[string]any{"allowPtrace": true}
				id := e.createTaskFor(e.cfg.WorkerType, p, tc.scopes)
				if r := e.waitRun(id, 0).Runs[0]; r.State != tc.state {
					t.Fatalf("run %+v, want %s", r, tc.state)
				}
				cs := e.docker.Containers()
				if tc.wantCap {
					if len(cs) != 1 || !slices.Equal(cs[0].Spec.CapAdd, []string{"SYS_PTRACE"}) {
						t.Errorf("containers %+v, want one with CapAdd SYS_PTRACE", cs)
					}
				} else if len(cs) != 0 {
					t.Errorf("%d containers created", len(cs))
				}
				if tc.wantLog != "" {
					log, _ := e.taskLog(id, 0)
					if !strings.Contains(log, tc.wantLog) {
						t.Errorf("task log lacks %q:\n%s", tc.wantLog, log)
					}
				}
			})
		})
	}
}

// Without the feature in the payload the container has no extra
// capability.
func TestNoPtraceByDefault(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := start(t, setup{extra: []features.Feature{allowptrace.New()}})
		id := e.createTask(payload(60, "true"))
		if r := e.waitRun(id, 0).Runs[0]; r.State != tc.StateCompleted {
			t.Fatalf("run %+v", r)
		}
		if cs := e.docker.Containers(); len(cs) != 1 || len(cs[0].Spec.CapAdd) != 0 {
			t.Errorf("containers %+v, want one without CapAdd", cs)
		}
	})
}

func TestDisableSeccomp(t *testing.T) {
	for _, tc := range []struct {
		name    string
		allow   bool
		scopes  []string
		state   string
		wantLog string
	}{
		{name: "allowed", allow: true, scopes: []string{"docker-worker:capability:disableSeccomp"}, state: "completed"},
		{name: "per-pool scope", allow: true, scopes: []string{"docker-worker:capability:disableSeccomp:null-provisioner/fake-docker"}, state: "completed"},
		{name: "scope missing", allow: true, scopes: []string{"docker-worker:capability:privileged"}, state: "failed",
			wantLog: "Insufficient scopes to run task without seccomp. Try adding docker-worker:capability:disableSeccomp:null-provisioner/fake-docker to the .scopes array"},
		{name: "worker refuses", scopes: []string{"docker-worker:capability:disableSeccomp"}, state: "failed",
			wantLog: "Cannot run task using docker without a seccomp profile.  Worker must be enabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := start(t, setup{extra: []features.Feature{capabilities.New(capabilities.Config{AllowDisableSeccomp: tc.allow})}})
				p := payload(60, "true")
				p["capabilities"] = map[string]any{"disableSeccomp": true}
				id := e.createTaskFor(e.cfg.WorkerType, p, tc.scopes)
				if r := e.waitRun(id, 0).Runs[0]; r.State != tc.state || (tc.state == "failed" && r.ReasonResolved != "failed") {
					t.Fatalf("run %+v, want %s", r, tc.state)
				}
				cs := e.docker.Containers()
				if tc.state == "completed" {
					if len(cs) != 1 || !slices.Equal(cs[0].Spec.SecurityOpt, []string{"seccomp=unconfined"}) {
						t.Errorf("containers %+v, want one with seccomp=unconfined", cs)
					}
				} else if len(cs) != 0 {
					t.Errorf("%d containers created", len(cs))
				}
				if tc.wantLog != "" {
					log, _ := e.taskLog(id, 0)
					if !strings.Contains(log, tc.wantLog) {
						t.Errorf("task log lacks %q:\n%s", tc.wantLog, log)
					}
				}
			})
		})
	}
}
