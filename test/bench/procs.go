package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.dockerworker.dev/docker-worker/worker/slugid"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

type options struct {
	overheadN, throughputN, capacity, livelogSeconds, artifactMiB int
	cancelN, statusPollMs, artifactRounds                         int
	taskImageMiB, taskImageRounds                                 int
	pulseCancelN, crashRounds, dirFiles                           int
	curveN, rssTasks                                              int
	curveCaps                                                     string
	image, out, bin, pulseURL, workerLogs                         string
	loadOptions
}

// env is the running queue process and its admin client.
type env struct {
	o       options
	dir     string
	bin     string
	rootURL string
	creds   tc.Credentials
	queue   *exec.Cmd
	client  *tc.Client
}

func buildBinary(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "docker-worker")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/docker-worker")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build docker-worker: %w", err)
	}
	return bin, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startQueue runs `docker-worker queue` and reads the credentials it prints.
// With -pulse-url the queue gets a config file naming the broker, so it
// publishes its Pulse messages (task-exception among them) there.
func (e *env) startQueue(ctx context.Context) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	args := []string{"queue", "--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--data-dir", filepath.Join(e.dir, "queue"), "--log-level", "warn"}
	if e.o.pulseURL != "" {
		path := filepath.Join(e.dir, "queue.yml")
		if err := os.WriteFile(path, []byte(fmt.Sprintf("pulse: {url: %q}\n", e.o.pulseURL)), 0o600); err != nil {
			return err
		}
		args = append(args, "--config", path)
	}
	cmd := exec.CommandContext(ctx, e.bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	e.queue = cmd
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "export ") {
			continue
		}
		for _, kv := range strings.Fields(strings.TrimPrefix(line, "export ")) {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "TASKCLUSTER_ROOT_URL":
				e.rootURL = v
			case "TASKCLUSTER_CLIENT_ID":
				e.creds.ClientID = v
			case "TASKCLUSTER_ACCESS_TOKEN":
				e.creds.AccessToken = v
			}
		}
		break
	}
	go func() {
		for sc.Scan() {
		}
	}()
	if e.rootURL == "" {
		return fmt.Errorf("docker-worker queue printed no export line")
	}
	e.client = tc.New(tc.Config{RootURL: e.rootURL, Credentials: &e.creds})
	return nil
}

// workerProc is a running `docker-worker run`.
type workerProc struct {
	cmd        *exec.Cmd
	workerType string
	// started is when the process was started.
	started time.Time
	mu      sync.Mutex
	timings []map[string]float64
	// records are the worker's other log records, in order; changed is
	// closed (and replaced) whenever one arrives.
	records []logRecord
	changed chan struct{}
	done    chan struct{}
}

// logRecord is one JSON log line of the worker.
type logRecord struct {
	Msg   string
	Time  time.Time
	Attrs map[string]any
}

// workerSpec is what a worker's config file says beyond the common keys.
type workerSpec struct {
	rootURL  string
	capacity int
	// ownWorkerID makes the worker type the worker id too; else it is
	// bench-1.
	ownWorkerID bool
	// extra holds further YAML config lines.
	extra string
}

func (e *env) startWorker(ctx context.Context, capacity int) (*workerProc, error) {
	return e.startWorkerWith(ctx, capacity, "")
}

// startWorkerWith starts a worker with extra YAML config lines.
func (e *env) startWorkerWith(ctx context.Context, capacity int, extra string) (*workerProc, error) {
	return e.startWorkerAt(ctx, e.rootURL, capacity, extra)
}

// startWorkerAt is startWorkerWith for a worker reaching the queue at
// rootURL (a proxy in front of it).
func (e *env) startWorkerAt(ctx context.Context, rootURL string, capacity int, extra string) (*workerProc, error) {
	path, wt, err := e.writeWorkerConfig(workerSpec{rootURL: rootURL, capacity: capacity, extra: extra})
	if err != nil {
		return nil, err
	}
	return e.launchWorker(ctx, path, wt)
}

// writeWorkerConfig writes the config file of a worker of a new worker
// type, with its own state directory, and returns its path and the type.
func (e *env) writeWorkerConfig(s workerSpec) (path, workerType string, err error) {
	// workerType allows only a-z, 0-9 and '-'.
	wt := "bench-" + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return 'x'
	}, strings.ToLower(slugid.Nice()[:10]))
	if s.rootURL == "" {
		s.rootURL = e.rootURL
	}
	workerID := "bench-1"
	if s.ownWorkerID {
		workerID = wt
	}
	cfg := fmt.Sprintf("rootUrl: %s\ntaskcluster: {clientId: %s, accessToken: %s}\n"+
		"provisionerId: bench\nworkerType: %s\nworkerGroup: bench\nworkerId: %s\n"+
		"capacity: %d\npublicIp: 127.0.0.1\ntaskQueue: {pollInterval: 100, maxBackoff: 2000}\nlogging: {liveLogBindAddress: 127.0.0.1}\n"+
		"capacityManagement: {diskspaceThreshold: 1000000000}\nstateDir: %s\n"+
		"features: {chainOfTrust: {enabled: false}}\n%s", // the worker needs a signing key otherwise
		s.rootURL, e.creds.ClientID, e.creds.AccessToken, wt, workerID, s.capacity, filepath.Join(e.dir, wt+"-state"), s.extra)
	path = filepath.Join(e.dir, wt+".yml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return "", "", err
	}
	return path, wt, nil
}

// launchWorker starts `docker-worker run` on the config file at path and
// reads its log records.
func (e *env) launchWorker(ctx context.Context, path, workerType string) (*workerProc, error) {
	cmd := exec.CommandContext(ctx, e.bin, "run", "--config", path)
	cmd.Env = append(os.Environ(), "TASKCLUSTER_ROOT_URL=", "TASKCLUSTER_CLIENT_ID=", "TASKCLUSTER_ACCESS_TOKEN=")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	w := &workerProc{cmd: cmd, workerType: workerType, changed: make(chan struct{}), done: make(chan struct{})}
	var logFile *os.File
	if e.o.workerLogs != "" {
		if err := os.MkdirAll(e.o.workerLogs, 0o755); err != nil {
			return nil, err
		}
		name := fmt.Sprintf("%s-%d.log", workerType, time.Now().UnixNano())
		if logFile, err = os.Create(filepath.Join(e.o.workerLogs, name)); err != nil {
			return nil, err
		}
	}
	w.started = time.Now()
	if err := cmd.Start(); err != nil {
		if logFile != nil {
			logFile.Close()
		}
		return nil, err
	}
	go func() {
		defer close(w.done)
		var in io.Reader = stdout
		if logFile != nil {
			defer logFile.Close()
			in = io.TeeReader(stdout, logFile)
		}
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			w.record(sc.Bytes())
		}
		// Keep the pipe drained after an over-long line.
		io.Copy(io.Discard, in)
	}()
	return w, nil
}

// record keeps one log line: task timings apart, every other record with
// its own timestamp (the arrival time when it has none).
func (w *workerProc) record(line []byte) {
	var rec map[string]any
	if json.Unmarshal(line, &rec) != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if rec["msg"] == "task timings" {
		t := map[string]float64{}
		for k, v := range rec {
			if f, ok := v.(float64); ok && strings.HasSuffix(k, "Ms") {
				t[k] = f
			}
		}
		w.timings = append(w.timings, t)
		return
	}
	msg, _ := rec["msg"].(string)
	at := time.Now()
	if s, ok := rec["time"].(string); ok {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			at = t
		}
	}
	w.records = append(w.records, logRecord{Msg: msg, Time: at, Attrs: rec})
	close(w.changed)
	w.changed = make(chan struct{})
}

// waitRecord waits up to limit for the first log record with message msg
// for which match (nil: any) holds, and returns it.
func (w *workerProc) waitRecord(ctx context.Context, msg string, match func(logRecord) bool, limit time.Duration) (logRecord, error) {
	timeout := time.After(limit)
	for seen := 0; ; {
		w.mu.Lock()
		recs, changed := w.records[seen:], w.changed
		seen = len(w.records)
		w.mu.Unlock()
		for _, r := range recs {
			if r.Msg == msg && (match == nil || match(r)) {
				return r, nil
			}
		}
		select {
		case <-changed:
		case <-w.done:
			return logRecord{}, fmt.Errorf("worker %s exited before logging %q", w.workerType, msg)
		case <-timeout:
			return logRecord{}, fmt.Errorf("worker %s logged no %q within %v", w.workerType, msg, limit)
		case <-ctx.Done():
			return logRecord{}, ctx.Err()
		}
	}
}

// recordsOf returns the log records with message msg so far.
func (w *workerProc) recordsOf(msg string) []logRecord {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []logRecord
	for _, r := range w.records {
		if r.Msg == msg {
			out = append(out, r)
		}
	}
	return out
}

// stop ends the worker gracefully and waits for it.
func (w *workerProc) stop() {
	w.cmd.Process.Signal(os.Interrupt)
	select {
	case <-w.done:
	case <-time.After(time.Minute):
		w.cmd.Process.Kill()
	}
	w.cmd.Wait()
}

// terminate stops the worker with SIGTERM (running tasks are aborted and
// their containers removed) and waits for it.
func (w *workerProc) terminate() {
	w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(time.Minute):
		w.cmd.Process.Kill()
	}
	w.cmd.Wait()
}

// kill ends the worker with SIGKILL, as a crash would, and waits for it.
func (w *workerProc) kill() {
	w.cmd.Process.Kill()
	<-w.done
	w.cmd.Wait()
}

// waitTimings waits up to limit for the worker's task timings and takes
// them: the worker logs them after removing the run's container, so after
// the run is resolved.
func (w *workerProc) waitTimings(limit time.Duration) []map[string]float64 {
	deadline := time.Now().Add(limit)
	for {
		if t := w.takeTimings(); len(t) > 0 || time.Now().After(deadline) {
			return t
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (w *workerProc) takeTimings() []map[string]float64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	t := w.timings
	w.timings = nil
	return t
}

// rssMiB is the resident set size of pid in MiB.
func rssMiB(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			if err != nil {
				return 0, err
			}
			return float64(kb) / 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

func (e *env) stopQueue() {
	if e.queue != nil && e.queue.Process != nil {
		e.queue.Process.Signal(syscall.SIGTERM)
		e.queue.Wait()
	}
}
