package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"go.dockerworker.dev/docker-worker/schemas"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/taskdoc"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// Defaults shared by dev and submit, so a task submitted without options
// reaches the dev worker.
const (
	devProvisionerID = "local"
	devWorkerType    = "docker"
)

// Exit codes of submit: each outcome has its own.
const (
	submitCompleted = 0 // the task completed (or, with --no-wait, was created)
	submitFailed    = 1 // the task failed
	submitUsage     = 2 // bad flags or arguments; FILE or --config unreadable or not an object
	submitException = 3 // the task resolved exception
	submitNoQueue   = 4 // the task could not be created or followed to its resolution
)

const submitExitCodes = `
exit codes:
  0  the task completed (with --no-wait: it was created)
  1  the task failed
  2  usage error: bad flags or arguments, FILE or --config unreadable or not an object
  3  the task resolved exception
  4  the task could not be submitted or followed: TASKCLUSTER_ROOT_URL unset, the queue
     refused it or could not be reached, or waiting was interrupted
`

func runSubmit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("submit", "submit [flags] FILE  (a task definition or a bare payload; JSON or YAML; - for stdin)", stderr)
	flagsUsage := fs.Usage
	fs.Usage = func() {
		flagsUsage()
		fmt.Fprint(fs.Output(), submitExitCodes)
	}
	cfgPath := fs.String("config", "", "worker config file to take provisionerId/workerType from")
	prov := fs.String("provisioner-id", "", "provisionerId (default: from --config, else "+devProvisionerID+")")
	wt := fs.String("worker-type", "", "workerType (default: from --config, else "+devWorkerType+")")
	noWait := fs.Bool("no-wait", false, "print the taskId and exit without waiting")
	poll := fs.Duration("poll", 500*time.Millisecond, "status poll interval while waiting")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return submitUsage
	}
	fail := func(code int, err error) int { fmt.Fprintf(stderr, "docker-worker: %v\n", err); return code }

	doc, err := readDocument(fs.Arg(0))
	if err != nil {
		return fail(submitUsage, err)
	}
	pool := [2]string{devProvisionerID, devWorkerType}
	if *cfgPath != "" {
		c := config.Default()
		if err := loadPartial(*cfgPath, c); err != nil {
			return fail(submitUsage, err)
		}
		pool = [2]string{c.ProvisionerID, c.WorkerType}
	}
	if *prov != "" {
		pool[0] = *prov
	}
	if *wt != "" {
		pool[1] = *wt
	}
	taskID, def := completeTask(doc, fs.Arg(0), pool, time.Now())
	body, err := json.Marshal(def)
	if err != nil {
		return fail(submitUsage, err)
	}
	rootURL, creds, err := clientFromEnv()
	if err != nil {
		return fail(submitNoQueue, err)
	}
	q := tc.New(tc.Config{RootURL: rootURL, Credentials: creds})
	if _, err := q.CreateTask(ctx, taskID, body); err != nil {
		return fail(submitNoQueue, fmt.Errorf("create task: %w", err))
	}
	fmt.Fprintf(stderr, "created task %s on %s\n", taskID, rootURL)
	if *noWait {
		fmt.Fprintln(stdout, taskID)
		return submitCompleted
	}
	streamed := followLiveLog(ctx, q, taskID, logName(def), *poll, stdout)
	status, err := waitResolved(ctx, q, taskID, *poll)
	if err != nil {
		return fail(submitNoQueue, err)
	}
	last := status.Runs[len(status.Runs)-1]
	if streamed != last.RunID {
		if streamed >= 0 {
			fmt.Fprintf(stdout, "\n== the live log of run %d ended early; the log of run %d:\n", streamed, last.RunID)
		}
		if err := printLog(ctx, q, taskID, last.RunID, def, stdout); err != nil {
			fmt.Fprintf(stderr, "docker-worker: could not read the task log: %v\n", err)
		}
	}
	printArtifacts(ctx, q, taskID, last.RunID, stderr)
	reason := ""
	if last.ReasonResolved != "" {
		reason = " (" + last.ReasonResolved + ")"
	}
	fmt.Fprintf(stderr, "task %s run %d: %s%s\n", taskID, last.RunID, last.State, reason)
	switch last.State {
	case tc.StateCompleted:
		return submitCompleted
	case tc.StateFailed:
		return submitFailed
	case tc.StateException:
		return submitException
	}
	return submitNoQueue // not resolved: waitResolved returns resolved tasks only
}

// clientFromEnv reads the standard Taskcluster variables.
func clientFromEnv() (string, *tc.Credentials, error) {
	rootURL := os.Getenv(config.EnvRootURL)
	if rootURL == "" {
		return "", nil, fmt.Errorf("%s is not set (run 'docker-worker dev' and export what it prints)", config.EnvRootURL)
	}
	id := os.Getenv(config.EnvClientID)
	if id == "" {
		return rootURL, nil, nil
	}
	return rootURL, &tc.Credentials{
		ClientID:    id,
		AccessToken: os.Getenv(config.EnvAccessToken),
		Certificate: os.Getenv(config.EnvCertificate),
	}, nil
}

// loadPartial reads a worker config file without requiring it to be
// complete (submit only needs the pool).
func loadPartial(path string, c *config.Config) error {
	doc, err := readDocument(path)
	if err != nil {
		return err
	}
	if v, ok := doc["provisionerId"].(string); ok {
		c.ProvisionerID = v
	}
	if v, ok := doc["workerType"].(string); ok {
		c.WorkerType = v
	}
	return nil
}

// completeTask turns a payload or partial task definition into a full one.
func completeTask(doc map[string]any, file string, pool [2]string, now time.Time) (string, map[string]any) {
	return taskdoc.Complete(doc, taskdoc.Defaults{
		ProvisionerID: pool[0], WorkerType: pool[1],
		Metadata: map[string]string{
			"name":        filepath.Base(file),
			"description": "submitted with docker-worker submit",
			"owner":       "docker-worker-submit@localhost",
			"source":      "https://localhost/docker-worker/submit",
		},
	}, now)
}

// waitResolved polls the task status until its last run is resolved and no
// retry is pending.
func waitResolved(ctx context.Context, q *tc.Client, taskID string, every time.Duration) (*tc.TaskStatus, error) {
	for {
		resp, err := q.Status(ctx, taskID)
		if err != nil {
			return nil, fmt.Errorf("task status: %w", err)
		}
		s := resp.Status
		switch s.State {
		case tc.StateCompleted, tc.StateFailed, tc.StateException:
			if len(s.Runs) == 0 {
				return nil, errors.New("task resolved without a run")
			}
			return &s, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(every):
		}
	}
}

// logName is the task's live log artifact name.
func logName(def map[string]any) string {
	if p, ok := def["payload"].(map[string]any); ok {
		if l, ok := p["log"].(string); ok && l != "" {
			return l
		}
	}
	return schemas.DefaultLog
}

// printLog writes the run's task log (the live log link, followed).
func printLog(ctx context.Context, q *tc.Client, taskID string, runID int, def map[string]any, w io.Writer) error {
	var buf bytes.Buffer
	if _, err := q.Download(ctx, q.ArtifactURL(taskID, runID, logName(def)), &buf); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// followLiveLog waits for the task's first run to start and, while its
// live log is a reference artifact (the worker serves it live), copies it
// to w as it is written. It returns the run it streamed to its end, or -1
// when there was nothing to follow (no live log feature, the task resolved
// first, a malformed payload) or the stream broke off.
func followLiveLog(ctx context.Context, q *tc.Client, taskID, name string, every time.Duration, w io.Writer) int {
	for {
		resp, err := q.Status(ctx, taskID)
		if err != nil {
			return -1
		}
		s := resp.Status
		switch s.State {
		case tc.StateCompleted, tc.StateFailed, tc.StateException:
			return -1
		}
		if n := len(s.Runs); n > 0 && s.Runs[n-1].State == tc.StateRunning {
			runID := s.Runs[n-1].RunID
			arts, err := q.ListArtifacts(ctx, taskID, runID, "")
			if err == nil {
				for _, a := range arts.Artifacts {
					if a.Name == name && a.StorageType == tc.StorageReference {
						if _, err := q.Download(ctx, q.ArtifactURL(taskID, runID, name), w); err != nil {
							return -1
						}
						return runID
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return -1
		case <-time.After(every):
		}
	}
}

func printArtifacts(ctx context.Context, q *tc.Client, taskID string, runID int, w io.Writer) {
	token := ""
	fmt.Fprintln(w, "artifacts:")
	for {
		resp, err := q.ListArtifacts(ctx, taskID, runID, token)
		if err != nil {
			fmt.Fprintf(w, "  (could not list artifacts: %v)\n", err)
			return
		}
		for _, a := range resp.Artifacts {
			fmt.Fprintf(w, "  %-40s %-9s %s\n", a.Name, a.StorageType, a.ContentType)
		}
		if resp.ContinuationToken == "" {
			return
		}
		token = resp.ContinuationToken
	}
}
