package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.dockerworker.dev/docker-worker/test/faultproxy"
	"go.dockerworker.dev/docker-worker/worker/cache"
	"go.dockerworker.dev/docker-worker/worker/localqueue"
	"go.dockerworker.dev/docker-worker/worker/slugid"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// Options shape one chaos run.
type Options struct {
	// Tasks is how many tasks run; Kills how many times the worker is
	// SIGKILLed (and started again) while they run.
	Tasks, Kills int
	// Capacity is the worker's capacity.
	Capacity int
	// Seed drives every random choice: task kinds and lengths, the
	// moments of the kills, the proxy's faults.
	Seed uint64
	// Faults turns on the fault-injecting proxy between the worker and
	// the queue; Outage adds one period in which the queue is unreachable.
	Faults bool
	Outage time.Duration
	// MaxTaskTime bounds how long a task sleeps.
	MaxTaskTime time.Duration
	// Timeout bounds the whole run.
	Timeout time.Duration
	// Bin is the docker-worker binary; Image the tasks' image.
	Bin, Image string
	// Dir holds everything the run writes (removed by the caller).
	Dir string
	// Log receives progress lines.
	Log io.Writer
}

// Report is what a chaos run found. Every count below "Runs" must be zero.
type Report struct {
	Seed       uint64        `json:"seed"`
	Tasks      int           `json:"tasks"`
	Kills      int           `json:"kills"`
	Duration   time.Duration `json:"duration_ns"`
	Completed  int           `json:"completed"`
	Failed     int           `json:"failed"`
	Runs       int           `json:"runs"`
	RetriedBy  map[string]int
	Proxy      faultproxy.Counts `json:"proxy"`
	Recoveries int               `json:"recoveries"`

	WrongResolutions  int      `json:"wrong_resolutions"`
	OrphanContainers  int      `json:"orphan_containers"`
	OrphanNetworks    int      `json:"orphan_networks"`
	HeldCaches        int      `json:"held_caches"`
	MissingArtifacts  int      `json:"missing_artifacts"`
	DoubleResolutions int      `json:"double_resolutions"`
	Panics            int      `json:"panics"`
	Problems          []string `json:"problems"`
}

// OK reports whether the run found nothing wrong.
func (r *Report) OK() bool {
	return r.WrongResolutions+r.OrphanContainers+r.OrphanNetworks+r.HeldCaches+
		r.MissingArtifacts+r.DoubleResolutions+r.Panics == 0
}

// Table formats the report as a Markdown table.
func (r *Report) Table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "| chaos (seed %d) | |\n|---|---|\n", r.Seed)
	row := func(k string, v any) { fmt.Fprintf(&b, "| %s | %v |\n", k, v) }
	row("tasks", r.Tasks)
	row("worker SIGKILLs", r.Kills)
	row("runs", r.Runs)
	row("tasks completed / failed (as their command says)", fmt.Sprintf("%d / %d", r.Completed, r.Failed))
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range r.RetriedBy {
			if !yield(k) {
				return
			}
		}
	})
	for _, k := range keys {
		row("runs retried after "+k, r.RetriedBy[k])
	}
	row("runs recovered by a restarted worker", r.Recoveries)
	row("queue requests through the proxy / faults injected", fmt.Sprintf("%d / %d", r.Proxy.Requests, injected(r.Proxy)))
	row("duration", r.Duration.Round(time.Second))
	row("**tasks resolved the wrong way**", r.WrongResolutions)
	row("**orphaned containers**", r.OrphanContainers)
	row("**orphaned networks**", r.OrphanNetworks)
	row("**cache instances left held**", r.HeldCaches)
	row("**artifacts missing from completed runs**", r.MissingArtifacts)
	row("**runs resolved twice differently**", r.DoubleResolutions)
	row("**panics in any log**", r.Panics)
	return b.String()
}

func injected(c faultproxy.Counts) int {
	n := 0
	for _, v := range c.Injected {
		n += v
	}
	return n
}

const (
	adminID    = "chaos-admin"
	adminToken = "chaos-admin-secret"
	cacheName  = "chaos-cache"
)

// taskKind is what a task does, and so how it must end.
type taskKind int

const (
	kindOK    taskKind = iota // exits 0 with an artifact
	kindFail                  // exits 3: failed
	kindCache                 // exits 0, using a volume cache
)

type chaosTask struct {
	id   string
	kind taskKind
}

// Run runs the chaos scenario and checks what it left.
func Run(ctx context.Context, o Options) (*Report, error) {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	start := time.Now()
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed+1))
	var logMu sync.Mutex // the outage goroutine logs too
	logf := func(format string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		fmt.Fprintf(o.Log, "chaos: "+format+"\n", args...)
	}
	rep := &Report{Seed: o.Seed, Tasks: o.Tasks, RetriedBy: map[string]int{}}

	// The queue listens on its own port; the worker reaches it only
	// through the proxy, whose address is the queue's root URL (so that
	// artifact uploads go through it too).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	direct := "http://" + ln.Addr().String()
	proxy, err := faultproxy.New(faultproxy.Config{Target: direct, Seed: o.Seed})
	if err != nil {
		ln.Close()
		return nil, err
	}
	defer proxy.Close()
	q, err := localqueue.New(localqueue.Config{
		RootURL:        proxy.URL(),
		DataDir:        filepath.Join(o.Dir, "queue"),
		Clients:        []localqueue.Client{{ClientID: adminID, AccessToken: adminToken, Scopes: []string{"*"}}},
		ClaimWait:      time.Second,
		ClaimTimeout:   time.Minute,
		ExpiryInterval: 500 * time.Millisecond,
	})
	if err != nil {
		ln.Close()
		return nil, err
	}
	qctx, stopQueue := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- localqueue.Serve(qctx, ln, q) }()
	defer func() {
		stopQueue()
		<-served
		q.Close()
	}()
	admin := tc.New(tc.Config{RootURL: direct, Credentials: &tc.Credentials{ClientID: adminID, AccessToken: adminToken}})

	workerID := "chaos-" + name()
	workerType := "chaos-" + name()
	conf := filepath.Join(o.Dir, "worker.yml")
	cacheDir := filepath.Join(o.Dir, "caches")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(
		"rootUrl: %s\ntaskcluster: {clientId: %s, accessToken: %s}\n"+
			"provisionerId: chaos\nworkerType: %s\nworkerGroup: chaos\nworkerId: %s\n"+
			"capacity: %d\npublicIp: 127.0.0.1\ntaskQueue: {pollInterval: 200, maxBackoff: 2000}\n"+
			"logging: {liveLogBindAddress: 127.0.0.1}\ncapacityManagement: {diskspaceThreshold: 1000000000}\n"+
			"stateDir: %s\ncache: {volumeCachePath: %s}\n"+
			"features: {chainOfTrust: {enabled: false}}\n", // the worker needs a signing key otherwise
		proxy.URL(), adminID, adminToken, workerType, workerID, o.Capacity,
		filepath.Join(o.Dir, "state"), cacheDir)), 0o600); err != nil {
		return nil, err
	}

	w := &proc{bin: o.Bin, conf: conf, dir: o.Dir}
	if err := w.start(); err != nil {
		return nil, err
	}
	defer w.kill()
	if o.Faults {
		proxy.SetRates(faultproxy.Rates{
			ErrorBefore: 0.03, ErrorAfter: 0.03, DropRequestBody: 0.01, DropResponseBody: 0.02, DropAnswer: 0.01,
			Delay: 0.05, DelayMin: 10 * time.Millisecond, DelayMax: 300 * time.Millisecond,
		})
	}

	var tasks []chaosTask
	for i := range o.Tasks {
		kind := kindOK
		switch x := rng.IntN(10); {
		case x == 0:
			kind = kindFail
		case x <= 2:
			kind = kindCache
		}
		sleep := time.Duration(rng.Int64N(int64(o.MaxTaskTime) + 1))
		id, err := createTask(ctx, admin, workerType, kind, sleep, i, o.Image)
		if err != nil {
			return nil, err
		}
		tasks = append(tasks, chaosTask{id, kind})
	}
	logf("%d tasks created for %s; worker %s", len(tasks), workerType, workerID)

	// The kills come at random moments while the tasks run, the outage
	// (if any) in the middle of them.
	span := time.Duration(o.Tasks/max(o.Capacity, 1)+1) * (o.MaxTaskTime/2 + 2*time.Second)
	var moments []time.Duration
	for range o.Kills {
		moments = append(moments, time.Duration(rng.Int64N(int64(span))))
	}
	slices.Sort(moments)
	if o.Outage > 0 {
		go func() {
			select {
			case <-time.After(span / 2):
				logf("queue unreachable for %s", o.Outage)
				proxy.Down(o.Outage)
			case <-ctx.Done():
			}
		}()
	}
	began := time.Now()
	for _, m := range moments {
		select {
		case <-time.After(time.Until(began.Add(m))):
		case <-ctx.Done():
			return nil, fmt.Errorf("timed out before kill %d", rep.Kills+1)
		}
		w.kill()
		rep.Kills++
		logf("SIGKILL %d at %s", rep.Kills, time.Since(began).Round(time.Millisecond))
		time.Sleep(time.Duration(rng.Int64N(int64(500 * time.Millisecond))))
		if err := w.start(); err != nil {
			return nil, err
		}
	}

	statuses, err := waitSettled(ctx, admin, tasks)
	if err != nil {
		return nil, fmt.Errorf("%w (worker logs in %s)", err, o.Dir)
	}
	logf("every task settled after %s; stopping the worker", time.Since(began).Round(time.Millisecond))
	if err := w.stop(); err != nil {
		rep.Problems = append(rep.Problems, "graceful stop: "+err.Error())
	}
	proxy.SetRates(faultproxy.Rates{})
	proxy.Up()
	rep.Proxy = proxy.Counts()

	check(ctx, rep, admin, tasks, statuses)
	checkLeftovers(ctx, rep, workerID, cacheDir)
	checkLogs(rep, w.logs)
	rep.Duration = time.Since(start)
	return rep, nil
}

// name is a random lower-case name of 8 letters and digits, as worker
// types and ids allow.
func name() string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return 'x'
	}, strings.ToLower(slugid.Nice()[:8]))
}

// createTask creates one chaos task.
func createTask(ctx context.Context, admin *tc.Client, workerType string, kind taskKind, sleep time.Duration, i int, image string) (string, error) {
	secs := fmt.Sprintf("%.1f", sleep.Seconds())
	script := fmt.Sprintf("echo task %d run $RUN_ID; sleep %s; echo $TASK_ID > /result.txt", i, secs)
	payload := map[string]any{
		"image":      image,
		"maxRunTime": 600,
		"artifacts": map[string]any{
			"public/result.txt": map[string]any{"type": "file", "path": "/result.txt"},
		},
	}
	var scopes []string
	switch kind {
	case kindFail:
		script += "; exit 3"
	case kindCache:
		script = "echo $TASK_ID >> /cache/seen; " + script
		payload["cache"] = map[string]any{cacheName: "/cache"}
		scopes = []string{"docker-worker:cache:" + cacheName}
	}
	payload["command"] = []string{"/bin/sh", "-c", script}
	now := time.Now().UTC()
	ts := func(t time.Time) string { return t.Format("2006-01-02T15:04:05.000Z") }
	def, err := json.Marshal(map[string]any{
		"provisionerId": "chaos",
		"workerType":    workerType,
		"schedulerId":   "chaos",
		"retries":       10,
		"created":       ts(now),
		"deadline":      ts(now.Add(time.Hour)),
		"expires":       ts(now.Add(24 * time.Hour)),
		"scopes":        append([]string{}, scopes...),
		"payload":       payload,
		"metadata": map[string]any{"name": fmt.Sprintf("chaos task %d", i), "description": "chaos",
			"owner": "chaos@localhost", "source": "https://localhost/docker-worker/chaos"},
	})
	if err != nil {
		return "", err
	}
	id := slugid.Nice()
	if _, err := admin.CreateTask(ctx, id, def); err != nil {
		return "", fmt.Errorf("create task: %w", err)
	}
	return id, nil
}

// settled reports whether the task's last run is resolved and no retry is
// coming.
func settled(s tc.TaskStatus) bool {
	switch s.State {
	case tc.StateCompleted, tc.StateFailed, tc.StateException:
		return true
	}
	return false
}

// waitSettled waits until every task is settled.
func waitSettled(ctx context.Context, admin *tc.Client, tasks []chaosTask) (map[string]tc.TaskStatus, error) {
	out := map[string]tc.TaskStatus{}
	for {
		pending := 0
		for _, t := range tasks {
			if s, ok := out[t.id]; ok && settled(s) {
				continue
			}
			resp, err := admin.Status(ctx, t.id)
			if err != nil {
				return nil, fmt.Errorf("status of %s: %w", t.id, err)
			}
			out[t.id] = resp.Status
			if !settled(resp.Status) {
				pending++
			}
		}
		if pending == 0 {
			return out, nil
		}
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
			return nil, fmt.Errorf("%d tasks still unresolved when the run timed out", pending)
		}
	}
}

// check verifies each task's runs: every run but the last was ended by a
// worker's death (worker-shutdown after a recovery, or claim-expired), the
// last ended as the task's command says, and a completed run has its
// artifacts.
func check(ctx context.Context, rep *Report, admin *tc.Client, tasks []chaosTask, statuses map[string]tc.TaskStatus) {
	problem := func(n *int, format string, args ...any) {
		*n++
		rep.Problems = append(rep.Problems, fmt.Sprintf(format, args...))
	}
	for _, t := range tasks {
		s := statuses[t.id]
		rep.Runs += len(s.Runs)
		for i, r := range s.Runs[:len(s.Runs)-1] {
			if r.State != tc.StateException || (r.ReasonResolved != tc.ReasonWorkerShutdown && r.ReasonResolved != "claim-expired") {
				problem(&rep.WrongResolutions, "%s run %d ended %s/%s before a retry", t.id, i, r.State, r.ReasonResolved)
				continue
			}
			rep.RetriedBy[r.ReasonResolved]++
		}
		last := s.Runs[len(s.Runs)-1]
		want := tc.StateCompleted
		if t.kind == kindFail {
			want = tc.StateFailed
		}
		if last.State != want {
			problem(&rep.WrongResolutions, "%s (kind %d) ended %s/%s, want %s", t.id, t.kind, last.State, last.ReasonResolved, want)
			continue
		}
		if want == tc.StateCompleted {
			rep.Completed++
		} else {
			rep.Failed++
		}
		arts, err := admin.ListArtifacts(ctx, t.id, last.RunID, "")
		if err != nil {
			problem(&rep.MissingArtifacts, "%s: list artifacts: %v", t.id, err)
			continue
		}
		have := map[string]bool{}
		for _, a := range arts.Artifacts {
			have[a.Name] = true
		}
		need := []string{"public/logs/live_backing.log", "public/logs/live.log"}
		if want == tc.StateCompleted {
			need = append(need, "public/result.txt")
		}
		for _, n := range need {
			if !have[n] {
				problem(&rep.MissingArtifacts, "%s run %d lacks %s", t.id, last.RunID, n)
			}
		}
		if want == tc.StateCompleted && have["public/result.txt"] {
			var buf bytes.Buffer
			if _, err := admin.Download(ctx, admin.ArtifactURL(t.id, last.RunID, "public/result.txt"), &buf); err != nil ||
				strings.TrimSpace(buf.String()) != t.id {
				problem(&rep.MissingArtifacts, "%s run %d: result.txt %q, %v", t.id, last.RunID, buf.String(), err)
			}
		}
	}
}

// checkLeftovers counts what the worker left: containers and networks
// labelled with its id, cache instances still held.
func checkLeftovers(ctx context.Context, rep *Report, workerID, cacheDir string) {
	label := "label=dev.dockerworker.worker-id=" + workerID
	for _, c := range []struct {
		args []string
		n    *int
		what string
	}{
		{[]string{"ps", "-aq", "--filter", label}, &rep.OrphanContainers, "container"},
		{[]string{"network", "ls", "-q", "--filter", label}, &rep.OrphanNetworks, "network"},
	} {
		out, err := exec.CommandContext(ctx, "docker", c.args...).Output()
		if err != nil {
			rep.Problems = append(rep.Problems, fmt.Sprintf("docker %s: %v", strings.Join(c.args, " "), err))
			*c.n++
			continue
		}
		for _, id := range strings.Fields(string(out)) {
			*c.n++
			rep.Problems = append(rep.Problems, "orphaned "+c.what+" "+id)
			exec.Command("docker", "rm", "-f", id).Run()
			if c.what == "network" {
				exec.Command("docker", "network", "rm", id).Run()
			}
		}
	}
	m := cache.New(cache.Config{Dir: cacheDir})
	if err := m.Load(ctx); err != nil {
		rep.Problems = append(rep.Problems, "load caches: "+err.Error())
		return
	}
	for _, i := range m.Instances() {
		if i.Holder != nil {
			rep.HeldCaches++
			rep.Problems = append(rep.Problems, fmt.Sprintf("cache %s held by %s/%d", i.Key(), i.Holder.TaskID, i.Holder.RunID))
		}
	}
}

// checkLogs reads every worker process's log: recoveries, runs resolved
// twice with different states, panics.
func checkLogs(rep *Report, logs []string) {
	resolved := map[string]map[string]bool{}
	for _, path := range logs {
		f, err := os.Open(path)
		if err != nil {
			rep.Problems = append(rep.Problems, err.Error())
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			line := sc.Text()
			if strings.Contains(line, "panic") || strings.HasPrefix(line, "goroutine ") {
				rep.Panics++
				rep.Problems = append(rep.Problems, filepath.Base(path)+": "+line)
			}
			var rec struct {
				Msg       string `json:"msg"`
				TaskID    string `json:"taskId"`
				RunID     *int   `json:"runId"`
				TaskState string `json:"taskState"`
			}
			if json.Unmarshal([]byte(line), &rec) != nil || rec.RunID == nil {
				continue
			}
			switch rec.Msg {
			case "recovery: resolved a run of a previous process":
				rep.Recoveries++
			case "task resolved":
			default:
				continue
			}
			if rec.TaskState == "canceled" {
				continue
			}
			k := fmt.Sprintf("%s/%d", rec.TaskID, *rec.RunID)
			if resolved[k] == nil {
				resolved[k] = map[string]bool{}
			}
			resolved[k][rec.TaskState] = true
		}
		f.Close()
	}
	for k, states := range resolved {
		if len(states) > 1 {
			rep.DoubleResolutions++
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s resolved as %v", k, slices.Sorted(func(yield func(string) bool) {
				for s := range states {
					if !yield(s) {
						return
					}
				}
			})))
		}
	}
}

// proc is the worker process, started again after each kill; each start
// logs to a file of its own.
type proc struct {
	bin, conf, dir string

	mu   sync.Mutex
	cmd  *exec.Cmd
	logs []string
}

func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	path := filepath.Join(p.dir, fmt.Sprintf("worker-%d.log", len(p.logs)))
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.bin, "run", "--config", p.conf)
	cmd.Env = append(os.Environ(), "TASKCLUSTER_ROOT_URL=", "TASKCLUSTER_CLIENT_ID=", "TASKCLUSTER_ACCESS_TOKEN=")
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start worker: %w", err)
	}
	go func() { cmd.Wait(); f.Close() }()
	p.cmd = cmd
	p.logs = append(p.logs, path)
	return nil
}

// kill SIGKILLs the current process and waits until it is gone.
func (p *proc) kill() {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	for !processGone(cmd.Process.Pid) {
		time.Sleep(10 * time.Millisecond)
	}
}

// stop interrupts the process (a graceful stop: running tasks finish) and
// waits for it to exit.
func (p *proc) stop() error {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	cmd.Process.Signal(os.Interrupt)
	deadline := time.Now().Add(2 * time.Minute)
	for !processGone(cmd.Process.Pid) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			return errors.New("the worker did not exit within 2 minutes of SIGINT")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// processGone reports whether pid has exited (and was reaped, or is a
// zombie).
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the command name in parentheses.
	if i := bytes.LastIndexByte(b, ')'); i > 0 && i+2 < len(b) {
		return b[i+2] == 'Z'
	}
	return false
}
