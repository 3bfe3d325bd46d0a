package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"go.dockerworker.dev/docker-worker/worker/slugid"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// queueSample is what the embedded-queue rows measured, no Docker
// involved: a queue process of its own, driven over HTTP with Hawk-signed
// requests by the worker's client, and a bare bbolt baseline in the same
// run.
type queueSample struct {
	// ClaimResolveMs: claimWork (one pending task) then reportCompleted
	// with the claim's temporary credentials, one client, sequential.
	ClaimResolveMs []float64 `json:"claim_resolve_ms"`
	// CreateMs: createTask, one client, sequential (the tasks the round
	// trips then claim).
	CreateMs []float64 `json:"create_ms"`
	// PairMs: after each round trip, two bare bbolt transactions (a
	// one-record update, fsynced, as the queue's store does it), the floor
	// of a claim and a resolve that are each durable before their answer.
	PairMs []float64 `json:"bare_transaction_pair_ms"`
	// Clients create → claim → resolve Tasks tasks in Seconds.
	Clients int     `json:"clients"`
	Tasks   int     `json:"tasks"`
	Seconds float64 `json:"seconds"`
	// The baseline: BaselineTransactions bbolt updates (three a task:
	// create, claim, resolve), each its own fsynced transaction, from
	// Clients goroutines, in BaselineSeconds.
	BaselineTransactions int     `json:"baseline_transactions"`
	BaselineSeconds      float64 `json:"baseline_seconds"`
	// QueueCPUSeconds is the queue process's user + sys time over the
	// sustained run.
	QueueCPUSeconds float64 `json:"queue_cpu_seconds"`
}

// queueProc is a `docker-worker queue` process of the queue rows.
type queueProc struct {
	cmd    *exec.Cmd
	client *tc.Client
	creds  tc.Credentials
}

// startBareQueue runs `docker-worker queue` on a data directory of its
// own, without Pulse, so that the rows measure the queue alone.
func (e *env) startBareQueue(ctx context.Context) (*queueProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, e.bin, "queue", "--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--data-dir", filepath.Join(e.dir, "queue-bench-"+slugid.Nice()), "--log-level", "warn", "--claim-wait", "2s")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &queueProc{cmd: cmd}
	sc := bufio.NewScanner(stdout)
	rootURL := ""
	for rootURL == "" && sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "export ")
		if !ok {
			continue
		}
		for _, kv := range strings.Fields(line) {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "TASKCLUSTER_ROOT_URL":
				rootURL = v
			case "TASKCLUSTER_CLIENT_ID":
				p.creds.ClientID = v
			case "TASKCLUSTER_ACCESS_TOKEN":
				p.creds.AccessToken = v
			}
		}
	}
	go func() {
		for sc.Scan() {
		}
	}()
	if rootURL == "" {
		p.stop()
		return nil, fmt.Errorf("the bench queue printed no export line")
	}
	p.client = tc.New(tc.Config{RootURL: rootURL, Credentials: &p.creds})
	return p, nil
}

func (p *queueProc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.cmd.Wait()
}

// cpuSeconds is the user + sys time of pid so far.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command (which may hold spaces) start after ')'.
	rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	var utime, stime float64
	fmt.Sscan(f[11], &utime)
	fmt.Sscan(f[12], &stime)
	return (utime + stime) / 100, nil // USER_HZ is 100 on Linux
}

// randomName is prefix and 8 random characters of [a-z0-9], a valid
// worker type.
func randomName(prefix string) string {
	return prefix + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return 'x'
	}, strings.ToLower(slugid.Nice()[:8]))
}

// queueTaskDef is a task definition for workerType of the bench
// provisioner, as small as the worker's tasks are.
func queueTaskDef(workerType string) ([]byte, error) {
	now := time.Now().UTC()
	ts := func(t time.Time) string { return t.Format("2006-01-02T15:04:05.000Z") }
	return json.Marshal(map[string]any{
		"provisionerId": "bench-queue", "workerType": workerType,
		"created": ts(now), "deadline": ts(now.Add(2 * time.Hour)), "expires": ts(now.Add(24 * time.Hour)),
		"payload": map[string]any{"image": "busybox", "command": []string{"true"}, "maxRunTime": 60},
		"metadata": map[string]any{"name": "bench", "description": "make bench: queue", "owner": "bench@localhost",
			"source": "https://localhost/docker-worker/bench"},
	})
}

// claimResolve claims the one pending task of workerType and reports it
// completed with the claim's credentials, as a worker does.
func claimResolve(ctx context.Context, client *tc.Client, workerType, workerID string) error {
	resp, err := client.ClaimWork(ctx, "bench-queue/"+workerType, tc.ClaimWorkRequest{Tasks: 1, WorkerGroup: "bench", WorkerID: workerID})
	if err != nil {
		return fmt.Errorf("claimWork: %w", err)
	}
	if len(resp.Tasks) != 1 {
		return fmt.Errorf("claimWork on %s answered %d tasks, want 1", workerType, len(resp.Tasks))
	}
	c := resp.Tasks[0]
	if _, err := client.WithCredentials(c.Credentials).ReportCompleted(ctx, c.Status.TaskID, c.RunID); err != nil {
		return fmt.Errorf("reportCompleted: %w", err)
	}
	return nil
}

// queueRows measures the embedded queue: the claim + resolve round trip
// of one client, then sustained create → claim → resolve from
// queueClients clients, then the same number of bare fsynced bbolt
// transactions from as many goroutines.
func (e *env) queueRows(ctx context.Context, r *results) error {
	s := &r.Samples.Queue
	p, err := e.startBareQueue(ctx)
	if err != nil {
		return err
	}
	defer p.stop()

	// Round trips: create one task, then claim and resolve it; then the
	// two bare transactions.
	wt := randomName("rt-")
	pair, closePair, err := barePair(filepath.Join(e.dir, "pair-"+slugid.Nice()+".db"))
	if err != nil {
		return err
	}
	defer closePair()
	for range e.o.queueRounds {
		def, err := queueTaskDef(wt)
		if err != nil {
			return err
		}
		start := time.Now()
		if _, err := p.client.CreateTask(ctx, slugid.Nice(), def); err != nil {
			return fmt.Errorf("createTask: %w", err)
		}
		s.CreateMs = append(s.CreateMs, ms(time.Since(start)))
		start = time.Now()
		if err := claimResolve(ctx, p.client, wt, "rt"); err != nil {
			return err
		}
		s.ClaimResolveMs = append(s.ClaimResolveMs, ms(time.Since(start)))
		d, err := pair()
		if err != nil {
			return err
		}
		s.PairMs = append(s.PairMs, ms(d))
	}

	// Sustained, in two rounds, each followed by its half of the
	// baseline: as many transactions as the queue committed state changes
	// (create, claim, resolve), each a bbolt update with its fsync, about
	// as large as a task record. Interleaving shares the disk's mood
	// between the two.
	s.Clients = e.o.queueClients
	per := max(e.o.queueTasks/s.Clients/2, 1)
	for range 2 {
		secs, cpu, err := sustained(ctx, p, s.Clients, per)
		if err != nil {
			return err
		}
		s.Tasks += per * s.Clients
		s.Seconds += secs
		s.QueueCPUSeconds += cpu
		n := 3 * per * s.Clients
		if secs, err = boltBaseline(filepath.Join(e.dir, "baseline-"+slugid.Nice()+".db"), n, s.Clients); err != nil {
			return err
		}
		s.BaselineTransactions += n
		s.BaselineSeconds += secs
	}
	return nil
}

// sustained has clients clients create, claim and resolve per tasks each
// and returns the seconds it took and the queue's CPU seconds meanwhile.
// Each client has its own worker type, so that no claim waits on a task
// another client took.
func sustained(ctx context.Context, p *queueProc, clients, per int) (secs, cpu float64, err error) {
	cpu0, _ := cpuSeconds(p.cmd.Process.Pid)
	start := time.Now()
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			wt := randomName(fmt.Sprintf("c%d-", i))
			def, err := queueTaskDef(wt)
			if err != nil {
				errs <- err
				return
			}
			for range per {
				if _, err := p.client.CreateTask(ctx, slugid.Nice(), def); err != nil {
					errs <- fmt.Errorf("createTask: %w", err)
					return
				}
				if err := claimResolve(ctx, p.client, wt, fmt.Sprintf("w%d", i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	secs = time.Since(start).Seconds()
	cpu1, _ := cpuSeconds(p.cmd.Process.Pid)
	close(errs)
	if err := <-errs; err != nil {
		return 0, 0, err
	}
	return secs, cpu1 - cpu0, nil
}

// barePair opens a bbolt file at path and returns a function that times
// two transactions of one ~1.5 KB record each, and one that closes and
// removes the file.
func barePair(path string) (func() (time.Duration, error), func(), error) {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("baseline store: %w", err)
	}
	bucket := []byte("tasks")
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucketIfNotExists(bucket); return err }); err != nil {
		db.Close()
		return nil, nil, err
	}
	value := []byte(strings.Repeat("x", 1500))
	pair := func() (time.Duration, error) {
		start := time.Now()
		for range 2 {
			key := []byte(slugid.Nice())
			if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put(key, value) }); err != nil {
				return 0, err
			}
		}
		return time.Since(start), nil
	}
	return pair, func() { db.Close(); os.Remove(path) }, nil
}

// boltBaseline commits n bbolt transactions of one ~1.5 KB record each
// (fsynced, bbolt's default) from clients goroutines and returns the
// seconds they took.
func boltBaseline(path string, n, clients int) (float64, error) {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return 0, fmt.Errorf("baseline store: %w", err)
	}
	defer os.Remove(path)
	defer db.Close()
	bucket := []byte("tasks")
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucketIfNotExists(bucket); return err }); err != nil {
		return 0, err
	}
	value := []byte(strings.Repeat("x", 1500))
	per := max(n/clients, 1)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for range clients {
		wg.Go(func() {
			for range per {
				key := []byte(slugid.Nice())
				if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put(key, value) }); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return time.Since(start).Seconds(), nil
}
