package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
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
	image, out, bin                                               string
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
func (e *env) startQueue(ctx context.Context) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, e.bin, "queue", "--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--data-dir", filepath.Join(e.dir, "queue"), "--log-level", "warn")
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
	mu         sync.Mutex
	timings    []map[string]float64
	done       chan struct{}
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
	// workerType allows only a-z, 0-9 and '-'.
	wt := "bench-" + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return 'x'
	}, strings.ToLower(slugid.Nice()[:10]))
	cfg := fmt.Sprintf("rootUrl: %s\ntaskcluster: {clientId: %s, accessToken: %s}\n"+
		"provisionerId: bench\nworkerType: %s\nworkerGroup: bench\nworkerId: bench-1\n"+
		"capacity: %d\npublicIp: 127.0.0.1\ntaskQueue: {pollInterval: 100, maxBackoff: 2000}\nlogging: {liveLogBindAddress: 127.0.0.1}\n"+
		"capacityManagement: {diskspaceThreshold: 1000000000}\nstateDir: %s\n%s",
		rootURL, e.creds.ClientID, e.creds.AccessToken, wt, capacity, filepath.Join(e.dir, wt+"-state"), extra)
	path := filepath.Join(e.dir, wt+".yml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, e.bin, "run", "--config", path)
	cmd.Env = append(os.Environ(), "TASKCLUSTER_ROOT_URL=", "TASKCLUSTER_CLIENT_ID=", "TASKCLUSTER_ACCESS_TOKEN=")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	w := &workerProc{cmd: cmd, workerType: wt, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) != nil || rec["msg"] != "task timings" {
				continue
			}
			t := map[string]float64{}
			for k, v := range rec {
				if f, ok := v.(float64); ok && strings.HasSuffix(k, "Ms") {
					t[k] = f
				}
			}
			w.mu.Lock()
			w.timings = append(w.timings, t)
			w.mu.Unlock()
		}
	}()
	return w, nil
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
