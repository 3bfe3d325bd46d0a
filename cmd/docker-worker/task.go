package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"go.dockerworker.dev/docker-worker/worker/tc"
)

// taskCommands are the subcommands of `docker-worker task`.
func taskCommands() []command {
	return []command{
		{"status", "print a task's state and runs", taskStatus},
		{"log", "print a run's task log, following it live while the run runs", taskLog},
		{"artifacts", "list a run's artifacts", taskArtifacts},
		{"cancel", "cancel a task (its current run resolves exception/canceled)", taskCancel},
		{"rerun", "run a resolved task again", taskRerun},
		{"schedule", "schedule a task whose dependencies are not resolved yet", taskSchedule},
		{"group", "list the tasks of a task group", taskGroup},
		{"timings", "print a resolved run's phase breakdown (queued, image, container, artifacts, logs)", taskTimings},
	}
}

func taskUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: docker-worker task <command> [flags] ID\n\ncommands:")
	for _, c := range taskCommands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nThey talk to $TASKCLUSTER_ROOT_URL (the embedded queue or a real deployment) with\n"+
		"$TASKCLUSTER_CLIENT_ID / $TASKCLUSTER_ACCESS_TOKEN (and $TASKCLUSTER_CERTIFICATE) when set.")
}

func runTask(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		w := stdout
		if len(args) == 0 {
			w = stderr
		}
		taskUsage(w)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range taskCommands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "docker-worker: unknown task command %q\n\n", args[0])
	taskUsage(stderr)
	return 2
}

// taskCmd parses the flags of a task subcommand (plus those addFlags adds)
// and returns the single ID argument and a client from the environment.
func taskCmd(name, idName string, args []string, stderr io.Writer, addFlags func(*flag.FlagSet)) (string, *tc.Client, int, bool) {
	fs := newFlags("task "+name, "task "+name+" [flags] "+idName, stderr)
	if addFlags != nil {
		addFlags(fs)
	}
	if code, ok := parse(fs, args); !ok {
		return "", nil, code, false
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return "", nil, 2, false
	}
	rootURL, creds, err := clientFromEnv()
	if err != nil {
		fmt.Fprintf(stderr, "docker-worker: %v\n", err)
		return "", nil, 1, false
	}
	return fs.Arg(0), tc.New(tc.Config{RootURL: rootURL, Credentials: creds}), 0, true
}

func taskFail(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "docker-worker: %v\n", err)
	return 1
}

// printStatus writes a task status as a short report.
func printStatus(w io.Writer, s *tc.TaskStatus) {
	fmt.Fprintf(w, "task %s: %s\n", s.TaskID, s.State)
	fmt.Fprintf(w, "  queue %s, group %s, retries left %d, deadline %s\n",
		s.TaskQueueID, s.TaskGroupID, s.RetriesLeft, s.Deadline.UTC().Format(time.RFC3339))
	if len(s.Runs) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  run\tstate\treason\tworker\tstarted\tresolved")
	for _, r := range s.Runs {
		reason := r.ReasonCreated
		if r.ReasonResolved != "" {
			reason += " → " + r.ReasonResolved
		}
		worker := "-"
		if r.WorkerID != "" {
			worker = r.WorkerGroup + "/" + r.WorkerID
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\n", r.RunID, r.State, reason, worker, fmtTime(r.Started), fmtTime(r.Resolved))
	}
	tw.Flush()
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func taskStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var asJSON *bool
	id, q, code, ok := taskCmd("status", "TASK_ID", args, stderr, func(fs *flag.FlagSet) {
		asJSON = fs.Bool("json", false, "print the status as the queue returns it")
	})
	if !ok {
		return code
	}
	resp, err := q.Status(ctx, id)
	if err != nil {
		return taskFail(stderr, err)
	}
	if *asJSON {
		b, _ := json.MarshalIndent(resp, "", "  ")
		fmt.Fprintln(stdout, string(b))
		return 0
	}
	printStatus(stdout, &resp.Status)
	return 0
}

// runOf returns the run a command is about: runFlag when given (>= 0),
// else the task's latest run.
func runOf(ctx context.Context, q *tc.Client, taskID string, runFlag int) (int, error) {
	if runFlag >= 0 {
		return runFlag, nil
	}
	resp, err := q.Status(ctx, taskID)
	if err != nil {
		return 0, err
	}
	if len(resp.Status.Runs) == 0 {
		return 0, fmt.Errorf("task %s has no runs yet (state %s)", taskID, resp.Status.State)
	}
	return len(resp.Status.Runs) - 1, nil
}

func taskLog(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var run *int
	id, q, code, ok := taskCmd("log", "TASK_ID", args, stderr, func(fs *flag.FlagSet) {
		run = fs.Int("run", -1, "run (default: the latest)")
	})
	if !ok {
		return code
	}
	runID, err := runOf(ctx, q, id, *run)
	if err != nil {
		return taskFail(stderr, err)
	}
	def, err := q.Task(ctx, id)
	if err != nil {
		return taskFail(stderr, err)
	}
	var doc map[string]any
	_ = json.Unmarshal(def.Raw, &doc)
	if err := writeRunLog(ctx, q, id, runID, logName(doc), logPollInterval, stdout); err != nil {
		return taskFail(stderr, fmt.Errorf("log of %s run %d: %w", id, runID, err))
	}
	return 0
}

// logPollInterval is how often `task log` looks again at a run whose log
// cannot be read yet.
const logPollInterval = time.Second

// writeRunLog copies the log artifact name of a run to w as it arrives.
// While the run is running the artifact is a reference to the worker's
// live log stream, which is followed as the task writes it until the log
// ends; once the run is resolved it is a link to the uploaded log, which is
// copied whole. A run that has not started, or has no log yet, or whose
// stream went away before it could be read (the run is finishing), is
// looked at again every `every` until the run is resolved.
func writeRunLog(ctx context.Context, q *tc.Client, taskID string, runID int, name string, every time.Duration, w io.Writer) error {
	for {
		resp, err := q.Status(ctx, taskID)
		if err != nil {
			return err
		}
		runs := resp.Status.Runs
		if runID >= len(runs) {
			return fmt.Errorf("task %s has no run %d", taskID, runID)
		}
		unresolved := runs[runID].State == tc.StatePending || runs[runID].State == tc.StateRunning
		cw := &countingWriter{w: w}
		_, err = q.Download(ctx, q.ArtifactURL(taskID, runID, name), cw)
		if err == nil || cw.n > 0 || !unresolved || !tc.IsNotFound(err) {
			return err
		}
		t := time.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// countingWriter counts what passes through it to w.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func taskArtifacts(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var run *int
	id, q, code, ok := taskCmd("artifacts", "TASK_ID", args, stderr, func(fs *flag.FlagSet) {
		run = fs.Int("run", -1, "run (default: the latest)")
	})
	if !ok {
		return code
	}
	runID, err := runOf(ctx, q, id, *run)
	if err != nil {
		return taskFail(stderr, err)
	}
	token := ""
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "name\tstorage\tcontent type\texpires\turl")
	for {
		resp, err := q.ListArtifacts(ctx, id, runID, token)
		if err != nil {
			tw.Flush()
			return taskFail(stderr, err)
		}
		for _, a := range resp.Artifacts {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.Name, a.StorageType, a.ContentType, a.Expires.UTC().Format(time.RFC3339), q.ArtifactURL(id, runID, a.Name))
		}
		if resp.ContinuationToken == "" {
			break
		}
		token = resp.ContinuationToken
	}
	tw.Flush()
	return 0
}

// taskChange runs a state-changing call and prints the resulting status.
func taskChange(name string, call func(*tc.Client, context.Context, string) (*tc.TaskStatusResponse, error)) func(context.Context, []string, io.Writer, io.Writer) int {
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		id, q, code, ok := taskCmd(name, "TASK_ID", args, stderr, nil)
		if !ok {
			return code
		}
		resp, err := call(q, ctx, id)
		if err != nil {
			return taskFail(stderr, err)
		}
		printStatus(stdout, &resp.Status)
		return 0
	}
}

func taskCancel(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return taskChange("cancel", (*tc.Client).CancelTask)(ctx, args, stdout, stderr)
}

func taskRerun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return taskChange("rerun", (*tc.Client).RerunTask)(ctx, args, stdout, stderr)
}

func taskSchedule(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return taskChange("schedule", (*tc.Client).ScheduleTask)(ctx, args, stdout, stderr)
}

func taskGroup(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	id, q, code, ok := taskCmd("group", "TASK_GROUP_ID", args, stderr, nil)
	if !ok {
		return code
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "taskId\tstate\truns\tname")
	token := ""
	for {
		resp, err := q.ListTaskGroup(ctx, id, token, 0)
		if err != nil {
			tw.Flush()
			return taskFail(stderr, err)
		}
		for _, t := range resp.Tasks {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", t.Status.TaskID, t.Status.State, len(t.Status.Runs), strings.ReplaceAll(t.Task.Metadata.Name, "\t", " "))
		}
		if resp.ContinuationToken == "" {
			break
		}
		token = resp.ContinuationToken
	}
	tw.Flush()
	return 0
}
