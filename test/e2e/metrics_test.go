package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
	"go.dockerworker.dev/docker-worker/worker/wiring"
)

// requireInflux fails (CI) or skips the test when no InfluxDB answers at
// base.
func requireInflux(t *testing.T, base string) {
	t.Helper()
	if err := pingInflux(base); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("InfluxDB at %s: %v (test/setup-env.sh starts it)", base, err)
		}
		t.Skipf("InfluxDB at %s: %v (test/setup-env.sh starts it)", base, err)
	}
}

func pingInflux(base string) error {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(base + "/ping")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("/ping answered %s", resp.Status)
	}
	return nil
}

// sharedInflux is the InfluxDB test/setup-env.sh runs.
func sharedInflux(t *testing.T) string {
	t.Helper()
	base := os.Getenv("DW_TEST_INFLUX")
	if base == "" {
		base = "http://127.0.0.1:8086"
	}
	requireInflux(t, base)
	return base
}

// influxRows runs an InfluxQL query and returns every row of every
// series, as column → value, with the series' tags merged in.
func influxRows(t *testing.T, base, db, q string) []map[string]any {
	t.Helper()
	resp, err := http.PostForm(base+"/query", url.Values{"db": {db}, "q": {q}})
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer resp.Body.Close()
	var body struct {
		Results []struct {
			Error  string
			Series []struct {
				Tags    map[string]string
				Columns []string
				Values  [][]any
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	var rows []map[string]any
	for _, r := range body.Results {
		if r.Error != "" {
			t.Fatalf("%s: %s", q, r.Error)
		}
		for _, s := range r.Series {
			for _, v := range s.Values {
				row := map[string]any{}
				for k, tv := range s.Tags {
					row[k] = tv
				}
				for i, c := range s.Columns {
					row[c] = v[i]
				}
				rows = append(rows, row)
			}
		}
	}
	return rows
}

// influxDatabase creates a database for the test, dropped at its end.
func influxDatabase(t *testing.T, base string) string {
	t.Helper()
	db := fmt.Sprintf("e2e_metrics_%d", time.Now().UnixNano())
	influxRows(t, base, "", "CREATE DATABASE "+db)
	t.Cleanup(func() {
		if pingInflux(base) == nil {
			influxRows(t, base, "", "DROP DATABASE "+db)
		}
	})
	return db
}

// metricsWorker runs an in-process worker built by wiring, as
// buildWorker does, and returns the wiring's worker too (for its metrics
// sink) and a function that stops and closes it (also called at the end
// of the test).
func metricsWorker(t *testing.T, cfg *config.Config) (*workerEnv, *wiring.Worker, func()) {
	t.Helper()
	return metricsWorkerTo(t, cfg, io.Discard)
}

// metricsWorkerTo is metricsWorker printing its WORKER_METRICS lines to
// stdout.
func metricsWorkerTo(t *testing.T, cfg *config.Config, stdout io.Writer) (*workerEnv, *wiring.Worker, func()) {
	t.Helper()
	dc := dockertest.Require(t)
	cfg.Logging.LiveLogBindAddress = "127.0.0.1"
	off := false
	cfg.Features = map[string]config.FeatureConfig{"localLiveLog": {Enabled: &off}}
	cfg.StateDir = t.TempDir()
	cfg.Ed25519SigningKeyLocation = testSigningKey(t)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &logSink{}
	w, err := wiring.Build(t.Context(), cfg, wiring.Options{
		Logger:  slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Version: "e2e", Hostname: "e2e-host", TempDir: t.TempDir(), Docker: dc, Stdout: stdout,
	})
	if err != nil {
		t.Fatal(err)
	}
	if w.Metrics == nil {
		t.Fatal("influx.url is set but the worker has no metrics sink")
	}
	ctx, cancel := context.WithCancel(context.Background())
	we := &workerEnv{w: w.Worker, cfg: cfg, logs: logs, stop: cancel, done: make(chan error, 1)}
	go func() { we.done <- w.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case <-we.done:
			case <-time.After(2 * time.Minute):
				t.Error("worker did not stop")
			}
			w.Close()
		})
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("worker log:\n%s", logs.String())
		}
	})
	return we, w, stop
}

// metricsConfig is a worker config for q writing to database db of base,
// flushing often.
func metricsConfig(q *queueEnv, workerType, base, db string) *config.Config {
	cfg := q.workerConfig(workerType)
	cfg.Capacity = 2
	cfg.InstanceType = "e2e.large"
	cfg.Region = "e2e-region-1"
	cfg.Influx.URL = base
	cfg.Influx.Database = db
	cfg.Influx.RetentionPolicy = "autogen"
	cfg.Influx.BatchSize = 5
	cfg.Influx.BufferSize = 50
	cfg.Influx.FlushInterval = 100
	cfg.Influx.WriteTimeout = 2000
	cfg.Influx.CapacityInterval = 200
	return cfg
}

// taskPoint waits for the task point of taskID and returns it.
func taskPoint(t *testing.T, base, db, taskID string) map[string]any {
	t.Helper()
	var rows []map[string]any
	eventually(t, "the task point of "+taskID, time.Minute, func() bool {
		rows = influxRows(t, base, db, fmt.Sprintf(`SELECT * FROM "task" WHERE "taskId" = '%s'`, taskID))
		return len(rows) > 0
	})
	if len(rows) != 1 {
		t.Fatalf("%d task points for %s: %v", len(rows), taskID, rows)
	}
	return rows[0]
}

// checkTags checks the worker's tags on a point; an empty config value is
// no tag.
func checkTags(t *testing.T, what string, p map[string]any, cfg *config.Config) {
	t.Helper()
	for k, v := range map[string]string{
		"provisionerId": cfg.ProvisionerID, "workerType": cfg.WorkerType, "workerGroup": cfg.WorkerGroup,
		"workerId": cfg.WorkerID, "instanceType": cfg.InstanceType, "region": cfg.Region,
	} {
		if v == "" && p[k] == nil {
			continue
		}
		if p[k] != v {
			t.Errorf("%s: tag %s = %v, want %q", what, k, p[k], v)
		}
	}
}

// phaseSum checks that the <phase>Ms fields of a task point add up to its
// totalMs and that each <phase>AtMs is the running sum; it returns the
// phases present.
func phaseSum(t *testing.T, p map[string]any) []string {
	t.Helper()
	var sum float64
	var present []string
	for _, ph := range []string{"image", "created", "started", "exited", "artifacts", "logUploaded", "resolved"} {
		d, ok := p[ph+"Ms"].(float64)
		if !ok {
			continue
		}
		present = append(present, ph)
		if d < 0 {
			t.Errorf("%sMs = %v", ph, d)
		}
		sum += d
		if at, _ := p[ph+"AtMs"].(float64); math.Abs(at-sum) > 0.01 {
			t.Errorf("%sAtMs = %v, want the sum of the phases so far, %v", ph, at, sum)
		}
	}
	total, _ := p["totalMs"].(float64)
	if total <= 0 || math.Abs(total-sum) > 0.01 {
		t.Errorf("phases %v add up to %vms, totalMs is %v", present, sum, total)
	}
	return present
}

func TestMetricsToInfluxDB(t *testing.T) {
	base := sharedInflux(t)
	db := influxDatabase(t, base)
	q := startQueue(t, nil)
	cfg := metricsConfig(q, "e2e-metrics", base, db)
	we, _, _ := metricsWorker(t, cfg)

	ok := q.create(t, newTask(cfg, shell("echo hello metrics", 60)))
	bad := q.create(t, newTask(cfg, shell("echo failing; exit 3", 60)))
	malformed := newTask(cfg, shell("true", 60))
	malformed["payload"].(map[string]any)["features"] = map[string]any{"noSuchFeature": true}
	mal := q.create(t, malformed)
	wantState(t, q.waitRun(t, ok, 0, 2*time.Minute), 0, "completed", "")
	wantState(t, q.waitRun(t, bad, 0, 2*time.Minute), 0, "failed", "")
	wantState(t, q.waitRun(t, mal, 0, 2*time.Minute), 0, "exception", "malformed-payload")

	for _, c := range []struct {
		id, resolution, reason string
		phases                 string
	}{
		{ok, "completed", "", "image created started exited artifacts logUploaded resolved"},
		{bad, "failed", "", "image created started exited artifacts logUploaded resolved"},
		{mal, "exception", "malformed-payload", "logUploaded resolved"},
	} {
		p := taskPoint(t, base, db, c.id)
		checkTags(t, "task "+c.id, p, cfg)
		if p["resolution"] != c.resolution || (c.reason != "" && p["reason"] != c.reason) || (c.reason == "" && p["reason"] != nil) {
			t.Errorf("task %s: resolution %v reason %v, want %s %q", c.id, p["resolution"], p["reason"], c.resolution, c.reason)
		}
		if p["runId"] != 0.0 {
			t.Errorf("task %s: runId %v", c.id, p["runId"])
		}
		if got := strings.Join(phaseSum(t, p), " "); got != c.phases {
			t.Errorf("task %s: phases %q, want %q", c.id, got, c.phases)
		}
		first, hasFirst := p["firstOutputAtMs"].(float64)
		switch {
		case c.id == mal && hasFirst:
			t.Errorf("task %s never started but has firstOutputAtMs %v", c.id, first)
		// The started mark is taken when Docker's start call returns, which
		// may be after the container's first output.
		case c.id != mal && (!hasFirst || first < p["createdAtMs"].(float64)-0.01 || first > p["exitedAtMs"].(float64)+0.01):
			t.Errorf("task %s: firstOutputAtMs %v not between createdAtMs %v and exitedAtMs %v",
				c.id, p["firstOutputAtMs"], p["createdAtMs"], p["exitedAtMs"])
		}
	}

	// The p95 of claim → container start per worker type, as the README
	// shows it, answers from the points of the two tasks that started.
	p95 := influxRows(t, base, db, `SELECT percentile("startedAtMs", 95) AS p95, count("startedAtMs") FROM "task" GROUP BY "workerType"`)
	if len(p95) != 1 || p95[0]["workerType"] != cfg.WorkerType || p95[0]["count"] != 2.0 {
		t.Errorf("p95 claim → start per worker type: %v", p95)
	}
	t.Logf("p95 claim → container start: %v", p95)

	var capRows []map[string]any
	eventually(t, "capacity points", time.Minute, func() bool {
		capRows = influxRows(t, base, db, `SELECT * FROM "capacity"`)
		return len(capRows) >= 2
	})
	for _, p := range capRows {
		checkTags(t, "capacity", p, cfg)
		r, _ := p["running"].(float64)
		if p["total"] != 2.0 || r < 0 || r > 2 || p["idle"] != 2-r {
			t.Errorf("capacity point %v", p)
		}
	}
	if n := we.logs.count("metrics: InfluxDB writes failing"); n != 0 {
		t.Errorf("%d write failures logged against a healthy InfluxDB", n)
	}
}

// TestMetricsClaimErrors: every failed claimWork call is a claim_error
// point, tagged with the queue's answer ("none": no answer).
func TestMetricsClaimErrors(t *testing.T) {
	base := sharedInflux(t)
	db := influxDatabase(t, base)
	q := startQueue(t, nil)
	// A queue that is not there: claims fail without an answer.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := "http://" + ln.Addr().String()
	ln.Close()
	cfg := metricsConfig(q, "e2e-metrics-claims", base, db)
	cfg.RootURL = gone
	cfg.TaskQueue.PollInterval, cfg.TaskQueue.MaxBackoff = 50, 100
	we, _, _ := metricsWorker(t, cfg)
	eventually(t, "claim_error points", time.Minute, func() bool {
		rows := influxRows(t, base, db, `SELECT sum("count") FROM "claim_error" WHERE "code" = 'none'`)
		return len(rows) == 1 && rows[0]["sum"].(float64) >= 2
	})
	rows := influxRows(t, base, db, `SELECT * FROM "claim_error" LIMIT 1`)
	checkTags(t, "claim_error", rows[0], cfg)
	if msg, _ := rows[0]["message"].(string); !strings.Contains(msg, "connection refused") {
		t.Errorf("claim_error message %q", msg)
	}
	if we.logs.count("[alert-operator] task retrieval error") == 0 {
		t.Error("the worker logged no claim error")
	}
}

// ownInflux is an InfluxDB started for one test, on its own ports and
// data directory; stop and start act on it alone.
type ownInflux struct {
	t    *testing.T
	bin  string
	conf string
	base string
	cmd  *exec.Cmd
	log  *logSink
}

// influxdBinary is the influxd test/setup-env.sh builds.
func influxdBinary(t *testing.T) string {
	t.Helper()
	state := os.Getenv("DW_TEST_STATE")
	if state == "" {
		state = "/var/tmp/docker-worker-test"
	}
	bin := filepath.Join(state, "bin", "influxd")
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("no influxd: %v (test/setup-env.sh builds it)", err)
		}
		t.Skipf("no influxd: %v (test/setup-env.sh builds it)", err)
	}
	return bin
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func startOwnInflux(t *testing.T) *ownInflux {
	t.Helper()
	bin := influxdBinary(t)
	dir := t.TempDir()
	httpPort, rpcPort := freePort(t), freePort(t)
	conf := filepath.Join(dir, "influxdb.conf")
	body := fmt.Sprintf(`reporting-disabled = true
bind-address = "127.0.0.1:%d"
[meta]
  dir = "%s/meta"
[data]
  dir = "%s/data"
  wal-dir = "%s/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:%d"
  log-enabled = false
`, rpcPort, dir, dir, dir, httpPort)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	o := &ownInflux{t: t, bin: bin, conf: conf, base: fmt.Sprintf("http://127.0.0.1:%d", httpPort)}
	o.start()
	return o
}

func (o *ownInflux) start() {
	o.t.Helper()
	o.log = &logSink{}
	o.cmd = exec.Command(o.bin, "run", "-config", o.conf)
	o.cmd.Stdout, o.cmd.Stderr = o.log, o.log
	if err := o.cmd.Start(); err != nil {
		o.t.Fatal(err)
	}
	cmd, log := o.cmd, o.log
	o.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		if o.t.Failed() {
			o.t.Logf("influxd (pid %d) output:\n%s", cmd.Process.Pid, log.String())
		}
	})
	eventually(o.t, "the test's own influxd", time.Minute, func() bool { return pingInflux(o.base) == nil })
}

// stop kills the server (as a crash or a network cut would).
func (o *ownInflux) stop() {
	o.cmd.Process.Kill()
	o.cmd.Wait()
}

// TestMetricsInfluxDownMidRun: InfluxDB goes away while a task runs; the
// tasks run and resolve as usual, the points that no longer fit are
// dropped and counted, and once InfluxDB is back the points held meanwhile
// arrive.
func TestMetricsInfluxDownMidRun(t *testing.T) {
	inf := startOwnInflux(t)
	db := influxDatabase(t, inf.base)
	q := startQueue(t, nil)
	cfg := metricsConfig(q, "e2e-metrics-down", inf.base, db)
	// Capacity points every 20ms fill the small buffer quickly.
	cfg.Influx.CapacityInterval = 20
	cfg.Influx.BatchSize, cfg.Influx.BufferSize = 5, 20
	we, w, stopWorker := metricsWorker(t, cfg)

	first := q.create(t, newTask(cfg, shell("echo before", 60)))
	wantState(t, q.waitRun(t, first, 0, 2*time.Minute), 0, "completed", "")
	taskPoint(t, inf.base, db, first)

	// The task is running (its container is up) when InfluxDB goes.
	mid := q.create(t, newTask(cfg, shell("echo started; sleep 2; echo done", 60)))
	eventually(t, "the task's container", time.Minute, func() bool {
		return len(containers(t, dockertest.Require(t), cfg.WorkerID)) > 0
	})
	inf.stop()
	dropped := w.Metrics.Dropped()
	outputs := map[string]string{mid: "done"}
	for i := range 3 {
		out := fmt.Sprintf("after %d", i)
		outputs[q.create(t, newTask(cfg, shell("echo "+out, 60)))] = out
	}
	for id, out := range outputs {
		wantState(t, q.waitRun(t, id, 0, 2*time.Minute), 0, "completed", "")
		mustContain(t, q.logOf(t, id, 0, ""), out)
	}
	eventually(t, "points dropped while InfluxDB is down", time.Minute, func() bool { return w.Metrics.Dropped() > dropped })

	// Back again: the batch held since it went away is written, and new
	// tasks' points arrive.
	written := w.Metrics.Written()
	inf.start()
	last := q.create(t, newTask(cfg, shell("echo back", 60)))
	wantState(t, q.waitRun(t, last, 0, 2*time.Minute), 0, "completed", "")
	p := taskPoint(t, inf.base, db, last)
	checkTags(t, "task after the restart", p, cfg)
	phaseSum(t, p)
	if w.Metrics.Written() <= written {
		t.Errorf("nothing written after InfluxDB came back (%d before, %d now)", written, w.Metrics.Written())
	}

	// Closing the worker logs the drops not yet logged; write problems
	// are logged at most once a minute before that.
	stopWorker()
	reports := we.logs.records("metrics: InfluxDB writes failing")
	if len(reports) < 2 {
		t.Fatalf("%d reports of write problems, want the first and the final one", len(reports))
	}
	final := reports[len(reports)-1]
	if n, _ := final["droppedTotal"].(float64); int64(n) != w.Metrics.Dropped() || n == 0 {
		t.Errorf("the final report says %v points dropped, the sink counted %d", final["droppedTotal"], w.Metrics.Dropped())
	}
	for i := 1; i < len(reports)-1; i++ {
		a, _ := time.Parse(time.RFC3339Nano, reports[i-1]["time"].(string))
		b, _ := time.Parse(time.RFC3339Nano, reports[i]["time"].(string))
		if b.Sub(a) < time.Minute-time.Second {
			t.Errorf("write problems reported at %v and again at %v", a, b)
		}
	}
	t.Logf("written %d, dropped %d, %d reports", w.Metrics.Written(), w.Metrics.Dropped(), len(reports))
}

// TestMetricsRecovery: the binary, SIGKILLed with a task running and
// started again, writes a recovery point for what it cleaned up, then the
// task point of the retried run.
func TestMetricsRecovery(t *testing.T) {
	dc := dockertest.Require(t)
	base := sharedInflux(t)
	db := influxDatabase(t, base)
	bin := workerBinary(t)
	q := startQueue(t, nil)
	cfg := q.workerConfig("e2e-metrics-recovery")
	cfg.Region = "none" // the default, which the binary's config leaves as is
	conf := writeConfig(t, cfg)
	appendFile(t, conf, fmt.Sprintf("influx: {url: %q, database: %s, flushInterval: 100, capacityInterval: 200}\n", base, db))
	w := &crashWorker{t: t, bin: bin, conf: conf}
	w.start()

	id := q.create(t, newTask(cfg, shell(`if [ "$RUN_ID" = 0 ]; then sleep 600; fi; echo "run $RUN_ID done"`, 900)))
	eventually(t, "the task's container", 2*time.Minute, func() bool {
		for _, c := range containers(t, dc, cfg.WorkerID) {
			if c.Running() {
				return true
			}
		}
		return false
	})
	w.kill()
	w.start()
	wantState(t, q.waitRun(t, id, 0, time.Minute), 0, "exception", "worker-shutdown")
	wantState(t, q.waitRun(t, id, 1, 2*time.Minute), 1, "completed", "")

	var rows []map[string]any
	eventually(t, "the recovery point", time.Minute, func() bool {
		rows = influxRows(t, base, db, `SELECT * FROM "recovery"`)
		return len(rows) > 0
	})
	r := rows[0]
	checkTags(t, "recovery", r, cfg)
	if len(rows) != 1 || r["containersRemoved"] != 1.0 || r["runsResolved"] != 1.0 || r["runsFailed"] != 0.0 {
		t.Errorf("recovery points: %v", rows)
	}
	var run1 []map[string]any
	eventually(t, "the task point of run 1", time.Minute, func() bool {
		run1 = influxRows(t, base, db, fmt.Sprintf(`SELECT * FROM "task" WHERE "taskId" = '%s' AND "runId" = 1`, id))
		return len(run1) > 0
	})
	if run1[0]["resolution"] != "completed" {
		t.Errorf("task point of run 1: %v", run1[0])
	}
	phaseSum(t, run1[0])
	w.kill()
}
