package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/worker/status"
)

// monitoring_test: the status endpoint and `docker-worker status` while a
// real task runs, and `docker-worker task timings` of a finished run.

// statusAddr is the address the worker's status endpoint listens on, from
// its log.
func (we *workerEnv) statusAddr(t *testing.T) string {
	t.Helper()
	we.waitLog(t, "status endpoint listening", 1, 20*time.Second)
	addr, _ := we.logs.records("status endpoint listening")[0]["address"].(string)
	if addr == "" {
		t.Fatal("no address in the status endpoint's log record")
	}
	return addr
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %v %s\n%s", url, err, resp.Status, b)
	}
	return string(b)
}

func summaryOf(t *testing.T, addr string) status.Summary {
	t.Helper()
	var sum status.Summary
	body := httpGet(t, "http://"+addr+"/")
	if err := json.Unmarshal([]byte(body), &sum); err != nil {
		t.Fatalf("summary: %v\n%s", err, body)
	}
	return sum
}

func TestStatusEndpoint(t *testing.T) {
	q := startQueue(t, nil)
	cfg := q.workerConfig("status-endpoint")
	cfg.Status.Listen = "127.0.0.1:0"
	cfg.Capacity = 2
	cfg.Task.StatusPollInterval = 500 // the cancellation is noticed soon
	logs := newTaskLogs()
	we := startWorkerWith(t, q, cfg, []features.Feature{logs})
	addr := we.statusAddr(t)

	id := q.create(t, newTask(cfg, shell("echo status-endpoint-running; sleep 600", 600)))
	logs.waitFor(t, id, 0, "status-endpoint-running", 2*time.Minute)
	// The run is past its first output; its image is looked up in the
	// background.
	var sum status.Summary
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		sum = summaryOf(t, addr)
		if len(sum.Running) == 1 && sum.Running[0].Phase == "firstOutput" && sum.Running[0].Image != "" {
			break
		}
		if time.Since(start) > time.Minute {
			t.Fatalf("the summary never showed the running task past its first output: %+v", sum)
		}
	}
	r := sum.Running[0]
	if r.TaskID != id || r.RunID != 0 || r.Image != image || r.Since.IsZero() {
		t.Errorf("running task %+v", r)
	}
	if sum.Version != "e2e" || sum.WorkerID != cfg.WorkerID || sum.WorkerPoolID != "null-provisioner/status-endpoint" ||
		sum.Capacity != (status.Capacity{Total: 2, Running: 1, Free: 1}) {
		t.Errorf("summary %+v", sum)
	}
	if sum.LastClaim.TaskID != id || sum.LastClaim.Claimed == nil || sum.LastClaim.Attempted == nil {
		t.Errorf("last claim %+v", sum.LastClaim)
	}
	if sum.Queue == nil || !sum.Queue.Reachable || sum.Docker == nil || !sum.Docker.Reachable {
		t.Errorf("queue %+v, docker %+v", sum.Queue, sum.Docker)
	}
	if sum.Disk == nil || sum.Disk.FreeBytes <= 0 || sum.Disk.Error != "" {
		t.Errorf("disk %+v", sum.Disk)
	}
	metrics := httpGet(t, "http://"+addr+"/metrics")
	mustContain(t, metrics, "docker_worker_tasks_claimed_total 1\n", "docker_worker_tasks_running 1\n",
		"docker_worker_capacity 2\n", `docker_worker_task_phase_duration_seconds_count{phase="image"} 1`,
		`docker_worker_task_phase_duration_seconds_count{phase="started"} 1`)

	// docker-worker status prints the same as a table.
	bin := workerBinary(t)
	out, err := exec.Command(bin, "status", "--addr", addr).CombinedOutput()
	if err != nil {
		t.Fatalf("docker-worker status: %v\n%s", err, out)
	}
	for _, re := range []string{`(?m)^capacity +1 running of 2 \(1 free\)$`, `(?m)^queue +reachable$`, `(?m)^docker +reachable$`,
		`(?m)^` + regexp.QuoteMeta(id) + ` +0 +firstOutput +\S+ \(.*\) +` + regexp.QuoteMeta(image) + `$`} {
		if !regexp.MustCompile(re).Match(out) {
			t.Errorf("docker-worker status output lacks %s:\n%s", re, out)
		}
	}

	if _, err := q.admin.CancelTask(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	wantState(t, q.waitRun(t, id, 0, 2*time.Minute), 0, "exception", "canceled")
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		sum = summaryOf(t, addr)
		if len(sum.Running) == 0 {
			break
		}
		if time.Since(start) > time.Minute {
			t.Fatalf("the cancelled run is still listed: %+v", sum.Running)
		}
	}
	total := 0
	for _, n := range sum.Counters.Resolved {
		total += n
	}
	if sum.Counters.Claimed != 1 || total != 1 || sum.Capacity.Free != 2 {
		t.Errorf("counters %+v, capacity %+v", sum.Counters, sum.Capacity)
	}
}

func TestTaskTimings(t *testing.T) {
	q := startQueue(t, nil)
	cfg := q.workerConfig("task-timings")
	startWorker(t, q, cfg)
	id := q.create(t, newTask(cfg, shell("echo timed", 60)))
	st := q.waitRun(t, id, 0, 2*time.Minute)
	wantState(t, st, 0, "completed", "")

	mustContain(t, q.logOf(t, id, 0, ""), "Task timings (ms): image=")
	bin := workerBinary(t)
	cmd := exec.Command(bin, "task", "timings", "--json", id, "0")
	cmd.Env = append(os.Environ(), "TASKCLUSTER_ROOT_URL="+q.rootURL, "TASKCLUSTER_CLIENT_ID="+adminID, "TASKCLUSTER_ACCESS_TOKEN="+adminToken)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("task timings: %v\n%s", err, stderr.String())
	}
	var rt struct {
		State    string
		Complete bool
		TotalMs  float64
		Phases   []struct {
			Phase, Source string
			Ms            float64
		}
	}
	if err := json.Unmarshal(stdout.Bytes(), &rt); err != nil {
		t.Fatalf("%v\n%s", err, stdout.String())
	}
	var names []string
	sum := 0.0
	for _, p := range rt.Phases {
		names = append(names, p.Phase)
		sum += p.Ms
		if p.Ms < 0 {
			t.Errorf("negative phase %+v", p)
		}
	}
	want := []string{"queued", "image", "created", "started", "exited", "artifacts", "logUploaded+resolved"}
	if !slices.Equal(names, want) || rt.State != "completed" || !rt.Complete {
		t.Errorf("timings %+v, phases %v, want %v", rt, names, want)
	}
	// The phases add up to the time from scheduled to resolved.
	r := st.Runs[0]
	if span := r.Resolved.Sub(r.Scheduled).Seconds() * 1000; math.Abs(sum-span) > 1 || math.Abs(rt.TotalMs-sum) > 0.01 {
		t.Errorf("phases add up to %.1f ms (total %.1f), the run spanned %.1f ms", sum, rt.TotalMs, span)
	}

	// The table form names each phase.
	cmd = exec.Command(bin, "task", "timings", id)
	cmd.Env = append(os.Environ(), "TASKCLUSTER_ROOT_URL="+q.rootURL)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("task timings: %v\n%s", err, out)
	}
	mustContain(t, string(out), "task "+id+" run 0: completed on random-local-worker/"+cfg.WorkerID, "PHASE", "queued", "exited", "total")
	if strings.Contains(string(out), "incomplete") {
		t.Errorf("incomplete breakdown:\n%s", out)
	}
}
