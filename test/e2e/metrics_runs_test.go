package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
	"go.dockerworker.dev/docker-worker/worker/metrics"
	"go.dockerworker.dev/docker-worker/worker/shutdown"
	"go.dockerworker.dev/docker-worker/worker/spot"
	"go.dockerworker.dev/docker-worker/worker/spot/spottest"
)

// pointsOf returns the points of measurement for taskID, waiting until
// there are at least n.
func pointsOf(t *testing.T, base, db, measurement, taskID string, n int) []map[string]any {
	t.Helper()
	var rows []map[string]any
	eventually(t, fmt.Sprintf("%d %s points of %s", n, measurement, taskID), time.Minute, func() bool {
		rows = influxRows(t, base, db, fmt.Sprintf(`SELECT * FROM %q WHERE "taskId" = '%s'`, measurement, taskID))
		return len(rows) >= n
	})
	return rows
}

// num is a numeric field of a point.
func num(t *testing.T, p map[string]any, field string) float64 {
	t.Helper()
	v, ok := p[field].(float64)
	if !ok {
		t.Errorf("field %s of %v is not a number", field, p)
	}
	return v
}

// TestMetricsImagesCachesArtifacts: tasks that pull an image, load a task
// image (then find both in Docker), use a volume cache twice and upload an
// artifact write image, cache and artifacts points that match what they
// did and fit inside their run's phases; the capacity points count slot
// seconds, host points come every metricsCollection.hostMetricsInterval,
// and WORKER_METRICS lines follow each run.
func TestMetricsImagesCachesArtifacts(t *testing.T) {
	base := sharedInflux(t)
	db := influxDatabase(t, base)
	dc := dockertest.Require(t)
	pushPrivateImage(t)
	if err := dc.RemoveImage(t.Context(), privateE2EImage); err != nil {
		t.Fatal(err)
	}
	q := startQueue(t, nil)
	archive, _ := testImageArchive(t)
	holder := q.publish(t, nil, published{name: "public/image.tar", body: archive})
	forgetArtifactImage(t, dc, holder, "public/image.tar")

	cfg := metricsConfig(q, "e2e-metrics-runs", base, db)
	cfg.Capacity = 1 // one run at a time: the second use of each finds the first's
	cfg.Cache.VolumeCachePath = t.TempDir()
	cfg.MetricsCollection.HostMetricsInterval = 200
	cfg.DockerVolume = t.TempDir()
	cfg.Registries = map[string]config.RegistryCredentials{
		dockertest.PrivateRegistry: {Username: dockertest.PrivateUser, Password: dockertest.PrivatePassword},
	}
	stdout := &logSink{}
	_, _, stop := metricsWorkerTo(t, cfg, stdout)

	run := func(def task) string {
		t.Helper()
		id := q.create(t, def)
		wantState(t, q.waitRun(t, id, 0, 2*time.Minute), 0, "completed", "")
		return id
	}
	pull := func() string {
		p := shell("true", 60)
		p["image"] = privateE2EImage
		return run(withScopes(newTask(cfg, p), "docker-worker:image:"+privateE2EImage))
	}
	const artifactBytes = 1 << 20
	withCache := func() string {
		p := shell(fmt.Sprintf("head -c %d /dev/urandom > /out.zst && echo x >> /c/seen", artifactBytes), 60)
		p["cache"] = map[string]any{"c": "/c"}
		p["artifacts"] = map[string]any{"public/out.zst": map[string]any{"type": "file", "path": "/out.zst"}}
		return run(withScopes(newTask(cfg, p), "docker-worker:cache:c"))
	}
	pulled, pulledAgain := pull(), pull()
	loaded, loadedAgain := run(newTask(cfg, taskImagePayload(holder, "public/image.tar", "true"))),
		run(newTask(cfg, taskImagePayload(holder, "public/image.tar", "true")))
	miss, hit := withCache(), withCache()

	// Images: what was fetched, and nothing the second time.
	for _, c := range []struct {
		id, kind, cached string
		bytes            float64 // -1: more than 0
	}{
		{pulled, "pull", "false", -1}, {pulledAgain, "pull", "true", 0},
		{loaded, "task-image", "false", float64(len(archive))}, {loadedAgain, "task-image", "true", 0},
		{miss, "pull", "true", 0},
	} {
		p := pointsOf(t, base, db, "image", c.id, 1)[0]
		checkTags(t, "image of "+c.id, p, cfg)
		b := num(t, p, "bytes")
		if p["kind"] != c.kind || p["cached"] != c.cached || p["shared"] != "false" ||
			(c.bytes < 0 && b <= 0) || (c.bytes >= 0 && b != c.bytes) {
			t.Errorf("image point of %s: %v, want kind %s cached %s bytes %v", c.id, p, c.kind, c.cached, c.bytes)
		}
		// SELECT * gives every column; a field the point lacks is null.
		if has := p["bytesPerSecond"] != nil; has != (c.cached == "false") {
			t.Errorf("image point of %s: bytesPerSecond present %v", c.id, has)
		}
		// The image's time is within the run's image phase.
		if tp := taskPoint(t, base, db, c.id); num(t, p, "ms") > num(t, tp, "imageMs")+0.01 {
			t.Errorf("image of %s took %vms, more than its image phase %vms", c.id, p["ms"], tp["imageMs"])
		}
	}

	// Caches: a miss, then a hit on the instance the first left.
	for id, result := range map[string]string{miss: "miss", hit: "hit"} {
		ps := pointsOf(t, base, db, "cache", id, 1)
		if len(ps) != 1 || ps[0]["cache"] != "c" || ps[0]["result"] != result || ps[0]["count"] != 1.0 {
			t.Errorf("cache points of %s: %v, want one %s", id, ps, result)
		}
		checkTags(t, "cache", ps[0], cfg)
	}
	hits := influxRows(t, base, db, `SELECT sum("count") FROM "cache" GROUP BY "result"`)
	if len(hits) != 2 {
		t.Errorf("cache hits and misses: %v", hits)
	}

	// Artifacts: the one payload artifact, its bytes as sent (.zst is not
	// gzipped), within the artifacts phase; the logs after it, within the
	// logUploaded phase.
	for _, id := range []string{miss, hit} {
		tp := taskPoint(t, base, db, id)
		kinds := map[string]map[string]any{}
		for _, p := range pointsOf(t, base, db, "artifacts", id, 2) {
			kinds[p["kind"].(string)] = p
		}
		a, l := kinds["artifacts"], kinds["logs"]
		if a == nil || l == nil {
			t.Fatalf("artifacts points of %s: %v", id, kinds)
		}
		checkTags(t, "artifacts", a, cfg)
		if a["count"] != 1.0 || a["failed"] != 0.0 || a["bytes"] != float64(artifactBytes) || num(t, a, "bytesPerSecond") <= 0 {
			t.Errorf("payload artifacts of %s: %v", id, a)
		}
		if num(t, a, "ms") > num(t, tp, "artifactsMs")+0.01 {
			t.Errorf("artifact uploads of %s took %vms, more than the artifacts phase %vms", id, a["ms"], tp["artifactsMs"])
		}
		if num(t, l, "count") < 1 || l["failed"] != 0.0 || num(t, l, "bytes") <= 0 {
			t.Errorf("log uploads of %s: %v", id, l)
		}
		if num(t, l, "ms") > num(t, tp, "logUploadedMs")+0.01 {
			t.Errorf("log uploads of %s took %vms, more than the logUploaded phase %vms", id, l["ms"], tp["logUploadedMs"])
		}
		phaseSum(t, tp)
	}

	// Capacity: slot-seconds add up to the slots times the time between
	// two points; some of them busy; efficiency as docker-worker's.
	var capRows []map[string]any
	eventually(t, "capacity points with busy slot-seconds", time.Minute, func() bool {
		capRows = influxRows(t, base, db, `SELECT * FROM "capacity"`)
		for _, p := range capRows {
			if b, _ := p["busySlotSeconds"].(float64); b > 0 {
				return true
			}
		}
		return false
	})
	var prev time.Time
	sawEfficiency := false
	for i, p := range capRows {
		at, err := time.Parse(time.RFC3339Nano, p["time"].(string))
		if err != nil {
			t.Fatal(err)
		}
		busy, idle := num(t, p, "busySlotSeconds"), num(t, p, "idleSlotSeconds")
		if i > 0 {
			if want := at.Sub(prev).Seconds() * float64(cfg.Capacity); busy < 0 || idle < 0 || busy+idle > want+0.01 || busy+idle < want-0.01 {
				t.Errorf("capacity point %d: %v busy + %v idle slot-seconds, want %v in all", i, busy, idle, want)
			}
		}
		prev = at
		if e, ok := p["efficiency"].(float64); ok {
			sawEfficiency = true
			want := num(t, p, "totalRunSeconds") / (float64(cfg.Capacity) * num(t, p, "uptimeSeconds")) * 100
			if e < 0 || e > 100 || e-want > 1e-6 || want-e > 1e-6 {
				t.Errorf("capacity point %d: efficiency %v, want %v", i, e, want)
			}
		}
	}
	if !sawEfficiency {
		t.Error("no capacity point has an efficiency")
	}

	// Host: CPU, memory and the Docker volume's disk.
	var host []map[string]any
	eventually(t, "host points", time.Minute, func() bool {
		host = influxRows(t, base, db, `SELECT * FROM "host"`)
		return len(host) >= 2
	})
	for _, p := range host {
		checkTags(t, "host", p, cfg)
		if c := num(t, p, "cpuPercent"); c < 0 || c > 100 {
			t.Errorf("host cpuPercent %v", c)
		}
		if num(t, p, "memTotal") <= 0 || num(t, p, "memUsed") > num(t, p, "memTotal") ||
			num(t, p, "diskTotal") <= 0 || num(t, p, "diskFree") > num(t, p, "diskTotal") || num(t, p, "uptimeSeconds") <= 0 {
			t.Errorf("host point %v", p)
		}
	}

	// WORKER_METRICS: the worker's boot and readiness, then for each run
	// taskQueue, taskStart and taskFinish, then its shutdown.
	stop()
	var events []string
	runs := map[string][]string{}
	for _, line := range strings.Split(stdout.String(), "\n") {
		if line == "" {
			continue
		}
		rest, ok := strings.CutPrefix(line, "WORKER_METRICS ")
		if !ok {
			t.Errorf("stdout line %q", line)
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(rest), &rec); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		ev := rec["eventType"].(string)
		if rec["worker"] != "docker-worker" || rec["workerPoolId"] != cfg.ProvisionerID+"/"+cfg.WorkerType ||
			rec["workerId"] != cfg.WorkerID || rec["region"] != cfg.Region || rec["instanceType"] != cfg.InstanceType {
			t.Errorf("WORKER_METRICS %q", line)
		}
		if id, ok := rec["taskId"].(string); ok {
			runs[id] = append(runs[id], ev)
			continue
		}
		events = append(events, ev)
	}
	if got, want := strings.Join(events, " "), strings.Join([]string{metrics.EventInstanceBoot, metrics.EventWorkerReady, metrics.EventInstanceShutdown}, " "); got != want {
		t.Errorf("worker events %q, want %q", got, want)
	}
	for _, id := range []string{pulled, pulledAgain, loaded, loadedAgain, miss, hit} {
		if got := strings.Join(runs[id], " "); got != "taskQueue taskStart taskFinish" {
			t.Errorf("WORKER_METRICS of %s: %q", id, got)
		}
	}
}

// TestMetricsWorkerMetricsSuppressed: docker-worker's test instance prints
// no WORKER_METRICS line.
func TestMetricsWorkerMetricsSuppressed(t *testing.T) {
	base := sharedInflux(t)
	db := influxDatabase(t, base)
	q := startQueue(t, nil)
	cfg := metricsConfig(q, "e2e-metrics-quiet", base, db)
	cfg.InstanceID = metrics.TestWorkerInstance
	stdout := &logSink{}
	_, _, stop := metricsWorkerTo(t, cfg, stdout)
	id := q.create(t, newTask(cfg, shell("true", 60)))
	wantState(t, q.waitRun(t, id, 0, 2*time.Minute), 0, "completed", "")
	taskPoint(t, base, db, id)
	stop()
	if out := stdout.String(); out != "" {
		t.Errorf("printed %q", out)
	}
}

// TestMetricsQueueErrors: every call to the queue that fails for good is
// a queue_error point tagged with its method and code: here the claims of
// a worker whose queue is gone.
func TestMetricsQueueErrors(t *testing.T) {
	base := sharedInflux(t)
	db := influxDatabase(t, base)
	q := startQueue(t, nil)
	cfg := metricsConfig(q, "e2e-metrics-queue-errors", base, db)
	// Credentials the queue refuses: claimWork answers 401.
	cfg.Taskcluster.AccessToken = "not-the-token"
	cfg.TaskQueue.PollInterval, cfg.TaskQueue.MaxBackoff = 50, 100
	metricsWorker(t, cfg)
	var rows []map[string]any
	eventually(t, "queue_error points", time.Minute, func() bool {
		rows = influxRows(t, base, db, `SELECT * FROM "queue_error"`)
		return len(rows) >= 1
	})
	p := rows[0]
	checkTags(t, "queue_error", p, cfg)
	if p["service"] != "queue" || p["method"] != "claimWork" || p["code"] != "401" || p["count"] != 1.0 {
		t.Errorf("queue_error point %v", p)
	}
}

// TestMetricsSpotNotice: a spot interruption notice is a spot_notice
// point (its action, and the time left until the interruption the notice
// gives), and the worker's WORKER_METRICS end with instanceShutdown.
func TestMetricsSpotNotice(t *testing.T) {
	base := sharedInflux(t)
	db := influxDatabase(t, base)
	q := startQueue(t, nil)
	srv := spottest.Start(t)
	cfg := metricsConfig(q, "e2e-metrics-spot", base, db)
	cfg.Shutdown.SpotTermination = true
	cfg.Shutdown.MetadataEndpoint = srv.URL
	cfg.Shutdown.NodeTerminationPoll = 100
	stdout := &logSink{}
	we, _, stop := metricsWorkerTo(t, cfg, stdout)
	eventually(t, "the first capacity point", time.Minute, func() bool {
		return len(influxRows(t, base, db, `SELECT * FROM "capacity"`)) > 0
	})
	when := time.Now().Add(2 * time.Minute).UTC().Truncate(time.Second)
	srv.Set(spot.InstanceActionPath, fmt.Sprintf(`{"action": "stop", "time": %q}`, when.Format(time.RFC3339)))
	wantSelfShutdown(t, we, we.waitExit(t, time.Minute), shutdown.TerminationNotice)
	stop() // flushes the sink
	rows := influxRows(t, base, db, `SELECT * FROM "spot_notice"`)
	if len(rows) != 1 {
		t.Fatalf("spot_notice points: %v", rows)
	}
	p := rows[0]
	checkTags(t, "spot_notice", p, cfg)
	// The notice says the interruption is 2 minutes away (less the time
	// the worker took to read it).
	if in := num(t, p, "inSeconds"); p["action"] != "stop" || p["count"] != 1.0 || in > 120 || in <= 0 {
		t.Errorf("spot_notice point %v", p)
	}
	if out := strings.TrimSpace(stdout.String()); !strings.Contains(out[strings.LastIndex(out, "\n")+1:], `"eventType":"instanceShutdown"`) {
		t.Errorf("the last WORKER_METRICS line is not instanceShutdown:\n%s", out)
	}
}
