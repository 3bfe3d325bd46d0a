package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"go.dockerworker.dev/docker-worker/worker/status"
)

// defaultStatusAddr is where `docker-worker status` asks when neither
// --addr nor $DOCKER_WORKER_STATUS_ADDR says: the status.listen the README
// recommends.
const defaultStatusAddr = "127.0.0.1:60095"

// runStatus prints a running worker's status endpoint summary as a table
// (--json: as the endpoint sent it).
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("status", "status [--addr HOST:PORT] [--json]", stderr)
	addrDefault := os.Getenv("DOCKER_WORKER_STATUS_ADDR")
	if addrDefault == "" {
		addrDefault = defaultStatusAddr
	}
	addr := fs.String("addr", addrDefault, "the worker's status.listen (host:port or http URL); $DOCKER_WORKER_STATUS_ADDR")
	raw := fs.Bool("json", false, "print the JSON summary as the worker sent it")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	url := *addr
	if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
		url = "http://" + url
	}
	body, err := fetchStatus(ctx, strings.TrimSuffix(url, "/")+"/")
	if err != nil {
		fmt.Fprintf(stderr, "docker-worker status: %v\n", err)
		return 1
	}
	if *raw {
		stdout.Write(body)
		return 0
	}
	var sum status.Summary
	if err := json.Unmarshal(body, &sum); err != nil {
		fmt.Fprintf(stderr, "docker-worker status: %s did not answer a status summary: %v\n", url, err)
		return 1
	}
	printWorkerStatus(stdout, sum, time.Now())
	return 0
}

func fetchStatus(ctx context.Context, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("bad address: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ask the worker: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("read the answer of %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s", url, resp.Status)
	}
	return body, nil
}

// printWorkerStatus writes the summary as two tables: the worker, then its
// runs in progress.
func printWorkerStatus(w io.Writer, s status.Summary, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	ago := func(t time.Time) string {
		return fmt.Sprintf("%s (%s ago)", t.UTC().Format(time.RFC3339), now.Sub(t).Round(time.Second))
	}
	reach := func(r *status.Reach) string {
		switch {
		case r == nil:
			return "not checked"
		case r.Reachable:
			return "reachable"
		}
		return "UNREACHABLE: " + r.Error
	}
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("worker", fmt.Sprintf("%s %s/%s", s.WorkerPoolID, s.WorkerGroup, s.WorkerID))
	row("version", s.Version)
	row("uptime", (time.Duration(s.UptimeSeconds) * time.Second).String())
	row("capacity", fmt.Sprintf("%d running of %d (%d free)", s.Capacity.Running, s.Capacity.Total, s.Capacity.Free))
	last := "never"
	if s.LastClaim.Attempted != nil {
		last = ago(*s.LastClaim.Attempted)
	}
	row("last claimWork", last)
	last = "none yet"
	if s.LastClaim.Claimed != nil {
		last = fmt.Sprintf("%s/%d at %s", s.LastClaim.TaskID, s.LastClaim.RunID, ago(*s.LastClaim.Claimed))
	}
	row("last claimed run", last)
	row("queue", reach(s.Queue))
	row("docker", reach(s.Docker))
	if d := s.Disk; d != nil {
		if d.Error != "" {
			row("free disk", d.Path+": "+d.Error)
		} else {
			row("free disk", fmt.Sprintf("%s on %s", bytesText(d.FreeBytes), d.Path))
		}
	}
	states := make([]string, 0, len(s.Counters.Resolved))
	for k, v := range s.Counters.Resolved {
		states = append(states, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(states)
	resolved := "none"
	if len(states) > 0 {
		resolved = strings.Join(states, ", ")
	}
	row("claimed", fmt.Sprint(s.Counters.Claimed))
	row("resolved", resolved)
	tw.Flush()

	fmt.Fprintln(w)
	if len(s.Running) == 0 {
		fmt.Fprintln(w, "no task running")
		return
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TASK\tRUN\tPHASE\tSINCE\tIMAGE")
	for _, r := range s.Running {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", r.TaskID, r.RunID, r.Phase, ago(r.Since), r.Image)
	}
	tw.Flush()
}

// bytesText is n in binary units.
func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
