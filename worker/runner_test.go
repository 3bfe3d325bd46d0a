package worker_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockerfake"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// runWant is a run of the task as the queue reports it.
type runWant struct {
	State, ReasonCreated, ReasonResolved string
}

// script is a dockerfake script chooser giving every container s.
func script(s dockerfake.Script) func(docker.ContainerSpec) dockerfake.Script {
	return func(docker.ContainerSpec) dockerfake.Script { return s }
}

// output is a script step writing line.
func output(line string) dockerfake.Step { return dockerfake.Step{Output: line + "\r\n"} }

// untilKilled writes a line and runs until killed.
var untilKilled = dockerfake.Script{Steps: []dockerfake.Step{output("working")}, RunUntilKilled: true}

// scenario is one task run through the worker, and what must come of it.
type scenario struct {
	name    string
	skip    string // the reason a scenario cannot pass yet
	setup   setup
	payload map[string]any
	// during runs after the task is created (nil: nothing).
	during func(t *testing.T, e *env, taskID string)
	// idle ends the scenario when the worker is idle again rather
	// than when the last resolved run in wantRuns is resolved.
	idle bool

	wantRuns []runWant
	// wantLog are lines of run 0's task log; nil means that no task log
	// may be uploaded.
	wantLog    []string
	wantKilled bool
	// wantNoReports: the worker does not resolve run 0 (the queue did);
	// it may still upload its logs.
	wantNoReports bool
	check         func(t *testing.T, e *env, taskID string)
}

// TestRunner runs one task per scenario through the real worker and the
// embedded queue, with a scripted Docker, in fake time.
func TestRunner(t *testing.T) {
	for _, tt := range []scenario{
		{
			name:     "exit 0 completes",
			setup:    setup{script: script(dockerfake.Script{Steps: []dockerfake.Step{output("hello"), {After: time.Minute, Output: "bye\r\n"}}})},
			payload:  payload(600, "echo", "hello"),
			wantRuns: []runWant{{"completed", "scheduled", "completed"}},
			wantLog: []string{
				"=== Task Starting ===", "hello\r\nbye\r\n", "=== Task Finished ===",
				"Successful task run with exit code: 0 completed in 60.000 seconds",
			},
		},
		{
			name:     "exit 1 fails",
			setup:    setup{script: script(dockerfake.Script{Steps: []dockerfake.Step{output("oops")}, ExitCode: 1})},
			payload:  payload(600, "false"),
			wantRuns: []runWant{{"failed", "scheduled", "failed"}},
			wantLog:  []string{"oops", "Unsuccessful task run with exit code: 1 completed in"},
		},
		{
			name:       "maxRunTime kills the container",
			setup:      setup{script: script(untilKilled)},
			payload:    payload(600, "sleep", "infinity"),
			wantRuns:   []runWant{{"failed", "scheduled", "failed"}},
			wantLog:    []string{"working", "Task timeout after 600 seconds. Force killing container."},
			wantKilled: true,
			check: func(t *testing.T, e *env, _ string) {
				c := e.docker.Containers()[0]
				if got := c.Stopped.Sub(c.Started); got != 600*time.Second {
					t.Errorf("container ran %v, want maxRunTime 600s", got)
				}
			},
		},
		{
			// A maxRunTime past the task's deadline ends at the deadline,
			// where the queue resolves the run: nothing is reported.
			name:          "the deadline bounds maxRunTime",
			setup:         setup{script: script(untilKilled)},
			payload:       payload(1<<55, "sleep", "infinity"),
			wantRuns:      []runWant{{"exception", "scheduled", "deadline-exceeded"}},
			wantKilled:    true,
			wantNoReports: true,
			wantLog:       []string{"Unsuccessful task run with exit code: -1"},
			check: func(t *testing.T, e *env, _ string) {
				c := e.docker.Containers()[0]
				if got := c.Stopped.Sub(c.Created); got != taskDeadline {
					t.Errorf("container ran %v, want until the deadline, %v after the task was created", got, taskDeadline)
				}
			},
		},
		hugeMaxRunTime(1 << 53),
		hugeMaxRunTime(1 << 55),    // 2^55 s in ns wraps to 0
		hugeMaxRunTime(9223372037), // just past math.MaxInt64 ns: wraps negative
		{
			name: "cancelTask is noticed by the status poll",
			setup: setup{
				config: func(c *config.Config) { c.Task.StatusPollInterval = 5000 },
				script: script(untilKilled),
			},
			payload: payload(3600, "sleep", "infinity"),
			during: func(t *testing.T, e *env, taskID string) {
				e.waitRunning()
				time.Sleep(time.Minute)
				cancelled := time.Now()
				if _, err := e.admin.CancelTask(t.Context(), taskID); err != nil {
					t.Fatalf("cancelTask: %v", err)
				}
				e.waitIdle(1)
				kills := e.docker.Kills()
				if len(kills) == 0 {
					t.Fatal("the container was not killed")
				}
				// Within the 5 s poll interval, plus the fake milliseconds
				// the poll's own calls may take.
				if d := kills[0].At.Sub(cancelled); d > 5*time.Second+500*time.Millisecond {
					t.Errorf("killed %v after cancelTask, want within the 5s status poll interval", d)
				}
			},
			wantRuns:      []runWant{{"exception", "scheduled", "canceled"}},
			wantKilled:    true,
			wantNoReports: true,
			wantLog:       []string{"Task was canceled by the queue."},
		},
		{
			name:    "Runs().Cancel stops the run",
			setup:   setup{script: script(untilKilled)},
			payload: payload(3600, "sleep", "infinity"),
			during: func(t *testing.T, e *env, taskID string) {
				e.waitRunning()
				if !e.w.Runs().Cancel(taskID, 0, errors.New("cancelled by the test")) {
					t.Fatal("Runs().Cancel found no run")
				}
				if e.w.Runs().Cancel(taskID, 1, errors.New("no such run")) {
					t.Error("Runs().Cancel found run 1, which the worker never held")
				}
			},
			// As when the queue cancels: the container is killed, the log
			// uploaded, and no resolution reported.
			idle:          true,
			wantRuns:      []runWant{{"running", "scheduled", ""}},
			wantKilled:    true,
			wantNoReports: true,
			wantLog:       []string{"cancelled by the test"},
		},
		{
			name: "reclaim answered 409 stops the task",
			setup: setup{
				script: script(untilKilled),
				faults: []fault{{"POST", "/reclaim", 409}},
			},
			payload:       payload(3600, "sleep", "infinity"),
			idle:          true,
			wantRuns:      []runWant{{"running", "scheduled", ""}},
			wantKilled:    true,
			wantNoReports: true,
			wantLog:       []string{"Could not reclaim task."},
			check: func(t *testing.T, e *env, taskID string) {
				if got := len(e.faults.requests(taskID + "/runs/0/reclaim")); got != 1 {
					t.Errorf("%d reclaims, want 1 (a conflict is not retried)", got)
				}
			},
		},
		{
			// A reclaim failing with 5xx is retried until takenUntil, not
			// given up after the client's few attempts. When the claim runs
			// out, the run is the queue's (claim-expired, retried): the
			// container is killed and no resolution is reported for it
			// (its log is uploaded if the queue still takes it, as for a
			// cancelled run).
			name: "reclaim failing with 5xx until takenUntil loses the claim",
			setup: setup{
				script: func(spec docker.ContainerSpec) dockerfake.Script {
					if slices.Contains(spec.Env, "RUN_ID=0") {
						return untilKilled
					}
					return dockerfake.Script{Steps: []dockerfake.Step{output("retried")}}
				},
				faults: []fault{{"POST", "/runs/0/reclaim", 503}},
			},
			payload: payload(3600, "sleep", "infinity"),
			wantRuns: []runWant{
				{"exception", "scheduled", "claim-expired"},
				{"completed", "retry", "completed"},
			},
			wantLog:       []string{"working", "Task was canceled by the queue. claim lost: could not reclaim the task before takenUntil"},
			wantKilled:    true,
			wantNoReports: true,
			check: func(t *testing.T, e *env, taskID string) {
				reclaims := e.faults.requests(taskID + "/runs/0/reclaim")
				if len(reclaims) <= tc.DefaultRetries+1 {
					t.Errorf("%d reclaims, want more than the client's %d attempts", len(reclaims), tc.DefaultRetries+1)
				}
				kills := e.docker.Kills()
				if len(kills) == 0 || len(reclaims) == 0 {
					return
				}
				// The first reclaim is at half the 20-minute claim: the run
				// must have held on for (nearly) the other half.
				if d := kills[0].At.Sub(reclaims[0].At); d < 9*time.Minute {
					t.Errorf("container killed %v after the first failed reclaim, want at takenUntil, 10 minutes later", d)
				}
			},
		},
		{
			name: "worker abort during the Exited phase",
			setup: setup{
				script: script(dockerfake.Script{Steps: []dockerfake.Step{output("done")}}),
				hooks: &hooks{exited: func(ctx context.Context, e *env) error {
					e.abort()
					<-ctx.Done()
					return fmt.Errorf("upload artifacts: %w", context.Cause(ctx))
				}},
			},
			payload: payload(600, "true"),
			during: func(t *testing.T, e *env, _ string) {
				e.waitStopped()
			},
			wantRuns: []runWant{
				{"exception", "scheduled", "worker-shutdown"},
				{"pending", "retry", ""},
			},
			wantLog: []string{"done", "Task has been aborted prematurely. Reason: worker-shutdown"},
		},
		{
			// The container had exited successfully: its result stands, and
			// the abort cuts neither the Finish phase nor the log upload.
			name: "worker abort during the Finish phase",
			setup: setup{
				script: script(dockerfake.Script{Steps: []dockerfake.Step{output("done")}}),
				hooks: &hooks{finish: func(ctx context.Context, e *env) error {
					e.abort()
					time.Sleep(time.Minute)
					return ctx.Err()
				}},
			},
			payload: payload(600, "true"),
			during: func(t *testing.T, e *env, _ string) {
				e.waitStopped()
			},
			wantRuns: []runWant{{"completed", "scheduled", "completed"}},
			wantLog:  []string{"done", "Successful task run with exit code: 0"},
		},
		{
			name: "onExitStatus.retry is an intermittent task",
			setup: setup{script: func(spec docker.ContainerSpec) dockerfake.Script {
				if slices.Contains(spec.Env, "RUN_ID=0") {
					return dockerfake.Script{Steps: []dockerfake.Step{output("flaky")}, ExitCode: 36}
				}
				return dockerfake.Script{Steps: []dockerfake.Step{output("fine")}}
			}},
			payload: func() map[string]any {
				p := payload(600, "flaky")
				p["onExitStatus"] = map[string]any{"retry": []int{36}}
				return p
			}(),
			wantRuns: []runWant{
				{"exception", "scheduled", "intermittent-task"},
				{"completed", "task-retry", "completed"},
			},
			wantLog: []string{"flaky", "Unsuccessful task run with exit code: 36"},
			check: func(t *testing.T, e *env, taskID string) {
				log, _ := e.taskLog(taskID, 1)
				if !strings.Contains(log, "fine") {
					t.Errorf("run 1 log:\n%s\nwant the retry's output", log)
				}
			},
		},
		{
			name:     "malformed payload",
			setup:    setup{},
			payload:  map[string]any{"command": []string{"true"}, "maxRunTime": 600},
			wantRuns: []runWant{{"exception", "scheduled", "malformed-payload"}},
			wantLog:  []string{"`task.payload` format is invalid json schema errors"},
			check: func(t *testing.T, e *env, _ string) {
				if got := e.docker.Pulls(); len(got) != 0 {
					t.Errorf("pulled %v for a malformed task", got)
				}
			},
		},
		{
			name:     "image pull fails",
			setup:    setup{pullErr: func(string) error { return errors.New("manifest unknown") }},
			payload:  payload(600, "true"),
			wantRuns: []runWant{{"failed", "scheduled", "failed"}},
			wantLog:  []string{"Pulling docker image has failed.", "manifest unknown"},
		},
		{
			name:     "container start fails",
			setup:    setup{script: script(dockerfake.Script{StartErr: errors.New("exec: no such file")})},
			payload:  payload(600, "nope"),
			wantRuns: []runWant{{"failed", "scheduled", "failed"}},
			wantLog:  []string{"Failure to properly start execution environment.", "exec: no such file"},
		},
		{
			// The queue resolved the run meanwhile, and no status poll
			// noticed: reportCompleted conflicts. The worker takes it as
			// the queue's resolution, once, and goes on claiming.
			name: "resolve answered 409 keeps the worker claiming",
			setup: setup{
				config: func(c *config.Config) { c.Task.StatusPollInterval = 0 },
				script: script(dockerfake.Script{Steps: []dockerfake.Step{{After: time.Minute, Output: "finished\r\n"}}}),
			},
			payload: payload(600, "true"),
			during: func(t *testing.T, e *env, taskID string) {
				e.waitRunning()
				if _, err := e.admin.CancelTask(t.Context(), taskID); err != nil {
					t.Fatalf("cancelTask: %v", err)
				}
				e.waitIdle(1)
				next := e.createTask(payload(600, "true"))
				if got := e.waitRun(next, 0).Runs[0].State; got != "completed" {
					t.Errorf("next task: got %s, want completed", got)
				}
			},
			wantRuns: []runWant{{"exception", "scheduled", "canceled"}},
			wantLog:  []string{"finished", "Successful task run with exit code: 0"},
			check: func(t *testing.T, e *env, taskID string) {
				if got := len(e.faults.requests(taskID + "/runs/0/completed")); got != 1 {
					t.Errorf("%d reportCompleted calls, want 1", got)
				}
				if got := e.logs.count("task already resolved by the queue"); got != 1 {
					t.Errorf("%d 'task already resolved by the queue' records, want 1", got)
				}
				if got := e.logs.count("could not resolve task"); got != 0 {
					t.Errorf("%d 'could not resolve task' records: a conflict is no error", got)
				}
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) { runScenario(t, tt) })
	}
}

// runScenario runs one scenario in a synctest bubble and checks its
// outcome.
func runScenario(t *testing.T, tt scenario) {
	t.Helper()
	if tt.skip != "" {
		t.Skip(tt.skip)
	}
	synctest.Test(t, func(t *testing.T) {
		e := start(t, tt.setup)
		taskID := e.createTask(tt.payload)
		if tt.during != nil {
			tt.during(t, e, taskID)
		}
		var st tc.TaskStatus
		if last := lastResolved(tt.wantRuns); tt.idle || last < 0 {
			e.waitIdle(1)
			st = e.status(taskID)
		} else {
			st = e.waitRun(taskID, last)
		}
		e.shutdown()

		var gotRuns []runWant
		for _, r := range st.Runs {
			gotRuns = append(gotRuns, runWant{r.State, r.ReasonCreated, r.ReasonResolved})
		}
		if diff := cmp.Diff(tt.wantRuns, gotRuns); diff != "" {
			t.Errorf("runs (-want +got):\n%s", diff)
		}

		log, ok := e.taskLog(taskID, 0)
		switch {
		case tt.wantLog == nil && ok:
			t.Errorf("a task log was uploaded:\n%s", log)
		case tt.wantLog != nil && !ok:
			t.Errorf("no task log was uploaded")
		}
		for _, line := range tt.wantLog {
			if !strings.Contains(log, line) {
				t.Errorf("task log lacks %q:\n%s", line, log)
			}
		}

		if got := len(e.docker.Kills()) > 0; got != tt.wantKilled {
			t.Errorf("container killed: got %v, want %v (kills %v)", got, tt.wantKilled, e.docker.Kills())
		}
		if cs := e.docker.Containers(); len(cs) > 0 {
			type spec struct {
				Image, TaskLabel string
				Cmd              []string
			}
			cmd, _ := tt.payload["command"].([]string)
			want := spec{dockerfake.ImageID(testImage), taskID, cmd}
			got := spec{cs[0].Spec.Image, cs[0].Spec.Labels["dev.dockerworker.task-id"], cs[0].Spec.Cmd}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("first container (-want +got):\n%s", diff)
			}
		}
		if tt.wantNoReports {
			for _, r := range e.faults.requests(taskID + "/runs/0/") {
				if r.Method != "GET" && !strings.HasSuffix(r.Path, "/reclaim") && !strings.Contains(r.Path, "/artifacts/") {
					t.Errorf("the worker called %s %s", r.Method, r.Path)
				}
			}
		}
		if tt.check != nil {
			tt.check(t, e, taskID)
		}
	})
}

// lastResolved is the index of the last resolved run in runs, or -1.
func lastResolved(runs []runWant) int {
	for i, r := range slices.Backward(runs) {
		switch r.State {
		case "completed", "failed", "exception":
			return i
		}
	}
	return -1
}

// hugeMaxRunTime is a scenario whose maxRunTime, in seconds, does not fit
// a time.Duration: the task must run to its end, not be killed at once.
func hugeMaxRunTime(secs int) scenario {
	return scenario{
		name:     fmt.Sprintf("maxRunTime %d does not overflow", secs),
		setup:    setup{script: script(dockerfake.Script{Steps: []dockerfake.Step{{After: 10 * time.Second, Output: "slept\r\n"}}})},
		payload:  payload(secs, "sleep", "10"),
		wantRuns: []runWant{{"completed", "scheduled", "completed"}},
		wantLog:  []string{"slept", "Successful task run with exit code: 0"},
	}
}
