package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	taskclusterproxy "go.dockerworker.dev/docker-worker/features/taskclusterProxy"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
	"go.dockerworker.dev/docker-worker/worker/localqueue"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// postCustom is the command of taskcluster_proxy_test (reference payload
// 14a) with busybox's wget: it creates the reference artifact "custom"
// through the proxy.
func postCustom(expires time.Time) string {
	body := fmt.Sprintf(`{"storageType":"reference","expires":"%s","contentType":"text/html","url":"https://mozilla.com"}`,
		expires.UTC().Format("2006-01-02T15:04:05.000Z"))
	return `wget -q -O- --header "Content-Type: application/json" --post-data '` + body +
		`' "$TASKCLUSTER_PROXY_URL/queue/v1/task/$TASK_ID/runs/$RUN_ID/artifacts/custom"`
}

// proxyNetworks lists the taskcluster proxy networks of a worker.
func proxyNetworks(t *testing.T, dc *docker.Client, workerID string) []docker.Network {
	t.Helper()
	nets, err := dc.ListNetworks(t.Context(), map[string]string{
		taskclusterproxy.LabelPurpose: taskclusterproxy.Purpose, taskclusterproxy.LabelWorkerID: workerID})
	if err != nil {
		t.Fatal(err)
	}
	return nets
}

// waitNoNetworks waits until the worker has no proxy network left.
func waitNoNetworks(t *testing.T, dc *docker.Client, workerID string) {
	t.Helper()
	for start := time.Now(); ; {
		nets := proxyNetworks(t, dc, workerID)
		if len(nets) == 0 {
			return
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("networks left behind: %+v", nets)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// taskcluster_proxy_test "issue a request to taskcluster via the proxy".
func TestProxyCreatesArtifact(t *testing.T) {
	dc := dockertest.Require(t)
	q := startQueue(t, nil)
	cfg := q.workerConfig("proxy")
	startWorker(t, q, cfg)
	p := shell("echo proxy=$TASKCLUSTER_PROXY_URL; "+postCustom(time.Now().Add(10*time.Minute)), 120)
	p["features"] = map[string]any{"taskclusterProxy": true}
	def := newTask(cfg, p)
	def["scopes"] = []string{"queue:create-artifact:custom"}
	id := q.create(t, def)
	s := q.waitRun(t, id, 0, 2*time.Minute)
	log := q.logOf(t, id, 0, "public/logs/live_backing.log")
	wantState(t, s, 0, tc.StateCompleted, "")
	mustContain(t, log, "proxy=http://taskcluster")
	a, ok := q.artifacts(t, id, 0)["custom"]
	if !ok || a.StorageType != "reference" {
		t.Errorf("artifact custom = %+v (present %v), want a reference artifact; log:\n%s", a, ok, log)
	}
	waitNoNetworks(t, dc, cfg.WorkerID)
}

// reclaim_test "test taskcluster-proxy credentials update": claims last 4 s,
// so the credentials of the claim have expired when the task calls the
// proxy after 9 s; the call succeeds with those of the latest reclaim.
func TestProxyAfterReclaims(t *testing.T) {
	dc := dockertest.Require(t)
	q := startQueue(t, func(c *localqueue.Config) { c.ClaimTimeout = 4 * time.Second })
	cfg := q.workerConfig("proxy-reclaim")
	we := startWorker(t, q, cfg)
	p := shell("sleep 9; "+postCustom(time.Now().Add(10*time.Minute)), 120)
	p["features"] = map[string]any{"taskclusterProxy": true}
	def := newTask(cfg, p)
	def["scopes"] = []string{"queue:create-artifact:custom"}
	id := q.create(t, def)
	s := q.waitRun(t, id, 0, 2*time.Minute)
	wantState(t, s, 0, tc.StateCompleted, "")
	if n := we.logs.count("reclaimed task"); n < 2 {
		t.Errorf("reclaimed %d times, want at least 2", n)
	}
	if _, ok := q.artifacts(t, id, 0)["custom"]; !ok {
		t.Errorf("no artifact custom; log:\n%s", q.logOf(t, id, 0, "public/logs/live_backing.log"))
	}
	waitNoNetworks(t, dc, cfg.WorkerID)
}

// A task cannot use another running task's proxy, nor can a host process;
// the other task's own proxy answers it.
func TestProxyIsolation(t *testing.T) {
	dc := dockertest.Require(t)
	q := startQueue(t, nil)
	cfg := q.workerConfig("proxy-isolation")
	cfg.Capacity = 2
	we := startWorker(t, q, cfg)

	// Task A waits, through its own proxy, for an artifact the test
	// creates once B is done.
	pa := shell(`for i in $(seq 240); do
  if wget -q -O- "$TASKCLUSTER_PROXY_URL/queue/v1/task/$TASK_ID/runs/$RUN_ID/artifacts" | grep -q release; then echo released; exit 0; fi
  sleep 0.5
done; exit 1`, 180)
	pa["features"] = map[string]any{"taskclusterProxy": true}
	// Through the proxy a task has its own scopes only (no anonymous ones).
	readScopes := []string{"queue:get-task:*", "queue:list-artifacts:*"}
	defA := newTask(cfg, pa)
	defA["scopes"] = readScopes
	a := q.create(t, defA)

	var gwA string
	for start := time.Now(); gwA == ""; {
		for _, n := range proxyNetworks(t, dc, cfg.WorkerID) {
			if n.Labels[taskclusterproxy.LabelTaskID] == a {
				gwA = n.Gateway.String()
			}
		}
		if time.Since(start) > time.Minute {
			t.Fatal("task A's network never appeared")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A host process is refused too (its source is the gateway itself).
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+gwA+"/queue/v1/task/"+a, nil)
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		res, err := http.DefaultClient.Do(req)
		if err != nil && time.Since(start) < 5*time.Second {
			continue // the proxy may not listen yet
		}
		if err != nil {
			t.Fatalf("host request to A's proxy: %v", err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusForbidden {
			t.Errorf("host request to A's proxy: %d %s, want 403", res.StatusCode, b)
		}
		break
	}

	pb := shell(`wget -q -O- "$TASKCLUSTER_PROXY_URL/queue/v1/task/$TASK_ID" >/dev/null && echo own-proxy-ok
if wget -q -O- "http://`+gwA+`/queue/v1/task/`+a+`"; then echo REACHED-OTHER-PROXY; exit 1; fi
echo other-proxy-refused`, 60)
	pb["features"] = map[string]any{"taskclusterProxy": true}
	defB := newTask(cfg, pb)
	defB["scopes"] = readScopes
	b := q.create(t, defB)
	sb := q.waitRun(t, b, 0, 2*time.Minute)
	logB := q.logOf(t, b, 0, "public/logs/live_backing.log")
	wantState(t, sb, 0, tc.StateCompleted, "")
	mustContain(t, logB, "own-proxy-ok", "403 Forbidden", "other-proxy-refused")
	if n := we.logs.count("taskcluster proxy refused a client"); n < 2 {
		t.Errorf("%d refusals logged, want 2 (the host, task B)", n)
	}
	if strings.Contains(logB, "REACHED-OTHER-PROXY") {
		t.Errorf("task B reached task A's proxy:\n%s", logB)
	}

	if _, err := q.admin.CreateArtifact(t.Context(), a, 0, "public/release", tc.ArtifactRequest{
		StorageType: "reference", URL: "https://example.com", ContentType: "text/plain",
		Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	sa := q.waitRun(t, a, 0, 2*time.Minute)
	wantState(t, sa, 0, tc.StateCompleted, "")
	waitNoNetworks(t, dc, cfg.WorkerID)
}

// A proxy network a crashed process of this worker left behind is removed
// before the first claim; another worker's is not.
func TestProxyNetworksLeftByACrash(t *testing.T) {
	dc := dockertest.Require(t)
	q := startQueue(t, nil)
	cfg := q.workerConfig("proxy-crash")
	labels := func(worker string) map[string]string {
		return map[string]string{taskclusterproxy.LabelPurpose: taskclusterproxy.Purpose,
			taskclusterproxy.LabelWorkerID: worker, taskclusterproxy.LabelTaskID: "left", taskclusterproxy.LabelRunID: "0"}
	}
	mine, err := dc.CreateNetwork(t.Context(), "taskcluster-proxy-left-"+cfg.WorkerID, labels(cfg.WorkerID))
	if err != nil {
		t.Fatal(err)
	}
	other, err := dc.CreateNetwork(t.Context(), "taskcluster-proxy-left-other-"+cfg.WorkerID, labels(cfg.WorkerID+"-other"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 30*time.Second)
		defer cancel()
		dc.RemoveNetwork(ctx, mine.ID)
		dc.RemoveNetwork(ctx, other.ID)
	})
	startWorker(t, q, cfg)
	waitNoNetworks(t, dc, cfg.WorkerID)
	if n := proxyNetworks(t, dc, cfg.WorkerID+"-other"); len(n) != 1 {
		t.Errorf("another worker's networks: %+v, want its one network kept", n)
	}
}
