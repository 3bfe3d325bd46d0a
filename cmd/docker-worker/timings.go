package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"go.dockerworker.dev/docker-worker/worker"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// phaseTiming is one row of `task timings`.
type phaseTiming struct {
	Phase string  `json:"phase"`
	Ms    float64 `json:"ms"`
	// Source says where the number comes from: "log" (the worker's
	// timings line in the task log) or "queue" (the run's timestamps).
	Source string `json:"source"`
}

// runTimings is what `task timings` reports of a run.
type runTimings struct {
	TaskID   string        `json:"taskId"`
	RunID    int           `json:"runId"`
	State    string        `json:"state"`
	Worker   string        `json:"worker"`
	Phases   []phaseTiming `json:"phases"`
	TotalMs  float64       `json:"totalMs"`
	Complete bool          `json:"complete"`
	// Note says why the breakdown is not complete.
	Note string `json:"note,omitempty"`
}

// taskTimings prints a resolved run's phase breakdown: the time it waited
// in the queue (scheduled → claimed), then each phase the worker recorded
// in the task log's timings line, then the log upload and resolution (the
// rest, up to the queue's resolved time).
func taskTimings(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("task timings", "task timings [--json] TASK_ID [RUN_ID]  (RUN_ID: default the latest run)", stderr)
	asJSON := fs.Bool("json", false, "print the breakdown as JSON")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		fs.Usage()
		return 2
	}
	runFlag := -1
	if fs.NArg() == 2 {
		n, err := strconv.Atoi(fs.Arg(1))
		if err != nil || n < 0 {
			fmt.Fprintf(stderr, "docker-worker task timings: RUN_ID %q is not a run number\n", fs.Arg(1))
			return 2
		}
		runFlag = n
	}
	rootURL, creds, err := clientFromEnv()
	if err != nil {
		return taskFail(stderr, err)
	}
	q := tc.New(tc.Config{RootURL: rootURL, Credentials: creds})
	id := fs.Arg(0)
	rt, err := readTimings(ctx, q, id, runFlag)
	if err != nil {
		return taskFail(stderr, err)
	}
	if *asJSON {
		b, _ := json.MarshalIndent(rt, "", "  ")
		fmt.Fprintln(stdout, string(b))
		return 0
	}
	printTimings(stdout, rt)
	return 0
}

// readTimings builds the breakdown of a run from its status and its task
// log.
func readTimings(ctx context.Context, q *tc.Client, taskID string, runFlag int) (*runTimings, error) {
	resp, err := q.Status(ctx, taskID)
	if err != nil {
		return nil, err
	}
	runs := resp.Status.Runs
	runID := runFlag
	if runID < 0 {
		runID = len(runs) - 1
	}
	if runID < 0 || runID >= len(runs) {
		return nil, fmt.Errorf("task %s has no run %d", taskID, max(runID, 0))
	}
	run := runs[runID]
	if run.Resolved.IsZero() {
		return nil, fmt.Errorf("run %d of %s is %s: its timings are published when it ends", runID, taskID, run.State)
	}
	rt := &runTimings{TaskID: taskID, RunID: runID, State: run.State, Worker: run.WorkerGroup + "/" + run.WorkerID}
	if run.ReasonResolved != "" && run.ReasonResolved != run.State {
		rt.State += "/" + run.ReasonResolved
	}
	if !run.Started.IsZero() {
		rt.Phases = append(rt.Phases, phaseTiming{Phase: "queued", Ms: ms(run.Started.Sub(run.Scheduled)), Source: "queue"})
	}
	def, err := q.Task(ctx, taskID)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	_ = json.Unmarshal(def.Raw, &doc)
	var log bytes.Buffer
	var phases []phaseTiming
	if _, err := q.Download(ctx, q.ArtifactURL(taskID, runID, logName(doc)), &log); err != nil {
		rt.Note = "no task log: " + err.Error()
	} else if phases, err = timingsFromLog(&log); errors.Is(err, errNoTimings) {
		rt.Note = "the task log has no timings line (written by a worker without them, or cut short)"
	} else if err != nil {
		return nil, fmt.Errorf("task log of %s run %d: %w", taskID, runID, err)
	}
	var worked float64
	for _, p := range phases {
		worked += p.Ms
	}
	rt.Phases = append(rt.Phases, phases...)
	rt.Complete = phases != nil && !run.Started.IsZero()
	if rt.Complete {
		rest := ms(run.Resolved.Sub(run.Started)) - worked
		rt.Phases = append(rt.Phases, phaseTiming{Phase: "logUploaded+resolved", Ms: max(rest, 0), Source: "queue"})
	}
	for _, p := range rt.Phases {
		rt.TotalMs += p.Ms
	}
	return rt, nil
}

func ms(d time.Duration) float64 { return d.Seconds() * 1000 }

// errNoTimings: the log has no timings line (a worker that did not write
// one, or a log cut short).
var errNoTimings = errors.New("no timings line")

// timingsFromLog finds the worker's timings line in a task log and reads
// its phases.
func timingsFromLog(r io.Reader) ([]phaseTiming, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var line string
	for sc.Scan() {
		if _, rest, ok := strings.Cut(sc.Text(), worker.TimingsLinePrefix); ok {
			line = rest // the last one wins: task output could imitate it
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if line == "" {
		return nil, errNoTimings
	}
	var out []phaseTiming
	for _, f := range strings.Fields(strings.TrimSpace(line)) {
		name, val, ok := strings.Cut(f, "=")
		n, err := strconv.ParseFloat(val, 64)
		if !ok || err != nil {
			return nil, fmt.Errorf("bad timings field %q", f)
		}
		out = append(out, phaseTiming{Phase: name, Ms: n, Source: "log"})
	}
	return out, nil
}

func printTimings(w io.Writer, rt *runTimings) {
	fmt.Fprintf(w, "task %s run %d: %s on %s\n", rt.TaskID, rt.RunID, rt.State, rt.Worker)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "PHASE\tDURATION\tSHARE\t")
	for _, p := range rt.Phases {
		share := 0.0
		if rt.TotalMs > 0 {
			share = p.Ms / rt.TotalMs * 100
		}
		fmt.Fprintf(tw, "%s\t%s\t%.1f%%\t\n", p.Phase, msText(p.Ms), share)
	}
	fmt.Fprintf(tw, "total\t%s\t\t\n", msText(rt.TotalMs))
	tw.Flush()
	if !rt.Complete {
		fmt.Fprintf(w, "(incomplete: %s)\n", rt.Note)
	}
}

// msText is a millisecond count as a Go duration, to the millisecond.
func msText(v float64) string {
	return (time.Duration(v * float64(time.Millisecond))).Round(time.Millisecond).String()
}
