package e2e

// Capabilities and features that change the task container's privileges,
// on a real dockerd, through a worker built as the binary builds it.

import (
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/tc"
)

// A task with capabilities.disableSeccomp runs with no seccomp filter
// (/proc/self/status says "Seccomp: 0"); without it the daemon's default
// profile filters (mode 2).
func TestDisableSeccompRunsUnconfined(t *testing.T) {
	q := startQueue(t, nil)
	cfg := q.workerConfig("seccomp")
	cfg.DockerConfig.AllowDisableSeccomp = true
	startWorker(t, q, cfg)

	p := shell(`grep -E '^Seccomp:[[:space:]]+0$' /proc/self/status`, 60)
	p["capabilities"] = map[string]any{"disableSeccomp": true}
	id := q.create(t, withScopes(newTask(cfg, p), "docker-worker:capability:disableSeccomp"))
	s := q.waitRun(t, id, 0, 2*time.Minute)
	log := q.logOf(t, id, 0, "")
	if s.Runs[0].State != tc.StateCompleted {
		t.Fatalf("run %+v; log:\n%s", s.Runs[0], log)
	}

	confined := q.create(t, newTask(cfg, shell(`grep -E '^Seccomp:[[:space:]]+2$' /proc/self/status`, 60)))
	wantState(t, q.waitRun(t, confined, 0, 2*time.Minute), 0, tc.StateCompleted, "")
}

// allowPtrace adds CAP_SYS_PTRACE (bit 19) to the task's effective
// capabilities.
func TestAllowPtraceAddsCapability(t *testing.T) {
	q := startQueue(t, nil)
	cfg := q.workerConfig("ptrace")
	startWorker(t, q, cfg)
	// CapEff is hex; bit 19 is SYS_PTRACE.
	const check = `eff=$(sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status); test $(( (0x$eff >> 19) & 1 )) -eq `
	p := shell(check+"1", 60)
	p["features"] = map[string]any{"allowPtrace": true}
	id := q.create(t, withScopes(newTask(cfg, p), "docker-worker:feature:allowPtrace"))
	s := q.waitRun(t, id, 0, 2*time.Minute)
	if s.Runs[0].State != tc.StateCompleted {
		t.Fatalf("run %+v; log:\n%s", s.Runs[0], q.logOf(t, id, 0, ""))
	}
	without := q.create(t, newTask(cfg, shell(check+"0", 60)))
	wantState(t, q.waitRun(t, without, 0, 2*time.Minute), 0, tc.StateCompleted, "")

	refused := newTask(cfg, p)
	id = q.create(t, refused)
	wantState(t, q.waitRun(t, id, 0, 2*time.Minute), 0, tc.StateFailed, "failed")
	mustContain(t, q.logOf(t, id, 0, ""), "Insufficient scopes to use 'allowPtrace' feature.")
}
