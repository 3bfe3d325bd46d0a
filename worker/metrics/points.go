package metrics

import (
	"sync"
	"time"
)

// Measurements the worker writes. Every point also carries the sink's
// tags (the worker's provisionerId, workerType, workerGroup, workerId,
// instanceType and region).
const (
	// MeasurementTask is one point per run, at its resolution: tags
	// resolution (completed, failed, exception, canceled) and reason (the
	// exception reason); fields taskId, runId, <phase>Ms (the phase's
	// duration: since the previous phase, the first since the claim),
	// <phase>AtMs (since the claim), firstOutputAtMs and totalMs (claim
	// to resolution, the sum of the <phase>Ms fields). The phases, in
	// order: image, created, started, exited, artifacts, logUploaded,
	// resolved (the report to the queue); a run that ends early skips
	// some.
	MeasurementTask = "task"
	// MeasurementCapacity is written every capacity interval: fields
	// running, total and idle (slots).
	MeasurementCapacity = "capacity"
	// MeasurementClaimError is one point per failed claimWork call: tag
	// code (the HTTP status, or "none" when the queue did not answer);
	// fields count (1) and message.
	MeasurementClaimError = "claim_error"
	// MeasurementRecovery is written when the worker finished what a
	// previous process left: fields containersRemoved, runsResolved,
	// runsExpired, runsFailed and ms.
	MeasurementRecovery = "recovery"
)

// Adder takes points; [Sink] is one.
type Adder interface {
	Add(measurement string, tags map[string]string, fields map[string]any, at time.Time)
}

// Capacity writes a capacity point.
func Capacity(a Adder, running, total int, at time.Time) {
	a.Add(MeasurementCapacity, nil, map[string]any{
		"running": running, "total": total, "idle": max(total-running, 0),
	}, at)
}

// ClaimError writes a claim_error point; status is the queue's HTTP
// answer (0: none).
func ClaimError(a Adder, status int, message string, at time.Time) {
	a.Add(MeasurementClaimError, map[string]string{"code": code(status)},
		map[string]any{"count": 1, "message": message}, at)
}

// Recovery writes a recovery point.
func Recovery(a Adder, containersRemoved, runsResolved, runsExpired, runsFailed int, took time.Duration, at time.Time) {
	a.Add(MeasurementRecovery, nil, map[string]any{
		"containersRemoved": containersRemoved, "runsResolved": runsResolved,
		"runsExpired": runsExpired, "runsFailed": runsFailed, "ms": ms(took),
	}, at)
}

// Runs follows each run from claim to resolution and writes its task
// point when it resolves. Its methods may be called concurrently.
type Runs struct {
	a    Adder
	mu   sync.Mutex
	runs map[runKey]*runTimes
	// ran is the time from claim to resolution of every run resolved.
	ran time.Duration
}

type runKey struct {
	taskID string
	runID  int
}

type runTimes struct {
	claimed     time.Time
	last        time.Time
	firstOutput time.Time
	fields      map[string]any
	// artifactsDone is set once the artifacts phase is reached: later
	// uploads are logs.
	artifactsDone   bool
	artifacts, logs uploads
}

// NewRuns returns a tracker writing to a.
func NewRuns(a Adder) *Runs {
	return &Runs{a: a, runs: map[runKey]*runTimes{}}
}

// Claimed starts following a run.
func (r *Runs) Claimed(taskID string, runID int, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runs[runKey{taskID, runID}] = &runTimes{claimed: at, last: at, fields: map[string]any{}}
}

// get returns the run's times, starting them at at for a run whose claim
// was not seen. Hold r.mu.
func (r *Runs) get(taskID string, runID int, at time.Time) *runTimes {
	k := runKey{taskID, runID}
	t := r.runs[k]
	if t == nil {
		t = &runTimes{claimed: at, last: at, fields: map[string]any{}}
		r.runs[k] = t
	}
	return t
}

// Phase records that the run finished phase at at. A phase seen twice
// adds up.
func (r *Runs) Phase(taskID string, runID int, phase string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.get(taskID, runID, at).phase(phase, at)
}

// phase adds the time since the last phase to phase's duration.
func (t *runTimes) phase(phase string, at time.Time) {
	d := ms(at.Sub(t.last))
	if prev, ok := t.fields[phase+"Ms"].(float64); ok {
		d += prev
	}
	t.fields[phase+"Ms"] = d
	t.fields[phase+"AtMs"] = ms(at.Sub(t.claimed))
	t.last = at
	if phase == "artifacts" {
		t.artifactsDone = true
	}
}

// Upload records an upload of the run: payload artifacts before the
// artifacts phase is reached, logs after. Uploads of a run not followed
// (the log of a run a previous process left, uploaded at start) are not
// counted: no task point would carry them.
func (r *Runs) Upload(taskID string, runID int, bytes int64, took time.Duration, failed bool, _ time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.runs[runKey{taskID, runID}]
	if t == nil {
		return
	}
	if t.artifactsDone {
		t.logs.add(bytes, took, failed)
	} else {
		t.artifacts.add(bytes, took, failed)
	}
}

// FirstOutput records the container's first output.
func (r *Runs) FirstOutput(taskID string, runID int, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.get(taskID, runID, at)
	if t.firstOutput.IsZero() {
		t.firstOutput = at
		t.fields["firstOutputAtMs"] = ms(at.Sub(t.claimed))
	}
}

// Resolved ends the "resolved" phase (which the worker may also mark
// itself, just before), writes the run's artifacts points (when it
// uploaded something) and its task point, and forgets the run. state is
// the resolution; reason the exception reason ("" for none).
func (r *Runs) Resolved(taskID string, runID int, state, reason string, at time.Time) {
	r.mu.Lock()
	t := r.get(taskID, runID, at)
	delete(r.runs, runKey{taskID, runID})
	r.ran += at.Sub(t.claimed)
	r.mu.Unlock()
	t.artifacts.write(r.a, taskID, runID, "artifacts", at)
	t.logs.write(r.a, taskID, runID, "logs", at)
	t.phase("resolved", at)
	f := t.fields
	f["totalMs"] = ms(at.Sub(t.claimed))
	f["taskId"] = taskID
	f["runId"] = runID
	r.a.Add(MeasurementTask, map[string]string{"resolution": state, "reason": reason}, f, at)
}

// RunTime is the sum, over the runs resolved so far, of the time from
// claim to resolution (docker-worker's totalRunTime).
func (r *Runs) RunTime() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ran
}

// Open is how many runs are followed (claimed, not resolved).
func (r *Runs) Open() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.runs)
}

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
