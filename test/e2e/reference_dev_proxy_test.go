package e2e

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	chainoftrust "go.dockerworker.dev/docker-worker/features/chainOfTrust"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/slugid"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// proxyRequest is a shell function sending `proxyRequest METHOD PATH
// [BODY]` to the taskcluster proxy in plain HTTP/1.0 and printing the
// answer (busybox wget can neither PUT nor stop at a redirect). busybox nc
// closes the connection when its input ends, before the answer; with -e
// the program it runs writes the request and then reads the answer to the
// end.
const proxyRequest = `proxyRequest() {
  printf '%s %s HTTP/1.0\r\nHost: taskcluster\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s' "$1" "$2" ${#3} "$3" > /proxy-request
  printf '#!/bin/sh\ncat /proxy-request\ncat >&2\n' > /proxy-send
  chmod +x /proxy-send
  nc taskcluster 80 -e /proxy-send 2>&1
}
`

// isoIn is a shell function printing the UTC time $1 seconds from now in
// Taskcluster's format.
const isoIn = `isoIn() { date -u -d @$(( $(date +%s) + $1 )) +%Y-%m-%dT%H:%M:%S.000Z; }
`

// geckoDecision is reference payload 05's command rewritten for the
// busybox test image: like the decision task it stands for, it creates a
// task through the proxy ($CHILD_ID), keeps state in its checkout cache
// and leaves an artifact in its artifacts directory.
const geckoDecision = proxyRequest + isoIn + `set -e
cache=/home/worker/checkouts
if [ -f $cache/last-decision ]; then echo "cache holds the checkout of $(cat $cache/last-decision)"; fi
echo $TASK_ID > $cache/last-decision
child='{"provisionerId":"local","workerType":"gecko-child","schedulerId":"gecko-level-1","projectId":"none","priority":"lowest","created":"'$(isoIn 0)'","deadline":"'$(isoIn 3600)'","expires":"'$(isoIn 3600)'","payload":{},"metadata":{"name":"child","description":"created by the decision task","owner":"e2e@localhost","source":"https://localhost/"}}'
answer=$(proxyRequest PUT /queue/v1/task/$CHILD_ID "$child")
echo "$answer" | head -n 1
echo "$answer" | grep -q " 200 OK"
mkdir -p /home/worker/artifacts
echo "decision of $GECKO_HEAD_REV" > /home/worker/artifacts/decision.txt`

// vcsCache is reference payload 07's command (process.argv of
// taskcluster-vcs's cache task) rewritten for busybox: it indexes its task
// under $NAMESPACE through the proxy's index service.
const vcsCache = proxyRequest + isoIn + `set -e
answer=$(proxyRequest PUT /index/v1/task/$NAMESPACE '{"taskId":"'$TASK_ID'","rank":1,"data":{"debug":"'"$DEBUG"'"},"expires":"'$(isoIn 3600)'"}')
echo "$answer" | head -n 1
echo "$answer" | grep -q " 200 OK"`

// `docker-worker dev` runs the reference payloads that use kvm and the
// taskcluster proxy, with the local busybox image instead of theirs: 03
// (kvm), 05 (a gecko decision task: proxy, a cache its role grants, chain
// of trust, a directory artifact), 07 (a cache task that indexes through
// the proxy) and 14a (an artifact created through the proxy).
func TestDevRunsProxyAndKVMReferencePayloads(t *testing.T) {
	dockertestRequire(t)
	bin := workerBinary(t)
	dir := t.TempDir()
	workerConf := filepath.Join(dir, "worker.yml")
	conf := "cache: {volumeCachePath: " + filepath.Join(dir, "caches") + "}\n"
	kvm := "/dev/kvm"
	if fi, err := os.Stat(kvm); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		// No kvm here: a device root of the test's own holds a character
		// node in its place (the major and minor of /dev/null).
		root := filepath.Join(dir, "dev")
		if err := os.MkdirAll(filepath.Join(root, "shm"), 0o1777); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mknod(filepath.Join(root, "kvm"), syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("no /dev/kvm and cannot make a device node (CI is set; tests run as root): %v", err)
			}
			t.Skipf("no /dev/kvm and cannot make a device node: %v", err)
		}
		conf += "deviceManagement: {root: " + root + "}\n"
	}
	if err := os.WriteFile(workerConf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	// The try repository's role grants its decision tasks their cache and
	// what they create, as on a deployment.
	queueConf := filepath.Join(dir, "queue.yml")
	if err := os.WriteFile(queueConf, []byte(`roles:
  - roleId: repo:hg.mozilla.org/try:*
    scopes: ["docker-worker:cache:level-1-*", "queue:create-task:project:none", "queue:scheduler-id:gecko-level-1", "queue:create-task:lowest:local/gecko-child"]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	q, _ := startDev(t, bin, filepath.Join(dir, "data"), "--config", workerConf, "--queue-config", queueConf)
	dev := config.Default()
	dev.ProvisionerID, dev.WorkerType = "local", "docker"

	t.Run("03 kvm", func(t *testing.T) {
		def := referenceTask(t, "03-community-tc-example-task-definition-kvm.task.json",
			map[string]string{"proj-taskcluster/gw-ubuntu-24-04": "local/docker", "ubuntu:latest": image})
		p := def["payload"].(map[string]any)
		// The payload counts to 600 in bash; the check is the device.
		p["command"] = []string{"/bin/sh", "-c", "test -c /dev/kvm && echo kvm is a character device"}
		task := newTask(dev, p)
		task["scopes"] = def["scopes"]
		id := q.create(t, task)
		q.wantCompleted(t, id)
		mustContain(t, q.logOf(t, id, 0, ""), "kvm is a character device")
	})

	t.Run("05 gecko decision task", func(t *testing.T) {
		decision := func(child string) string {
			def := referenceTask(t, "05-gecko-try-decision-task-2017.task.json", nil)
			fresh := newTask(dev, nil)
			for _, k := range []string{"provisionerId", "workerType", "created", "deadline", "expires"} {
				def[k] = fresh[k]
			}
			p := def["payload"].(map[string]any)
			p["image"] = image
			p["command"] = []string{"/bin/sh", "-c", geckoDecision}
			p["env"].(map[string]any)["CHILD_ID"] = child
			p["artifacts"].(map[string]any)["public"].(map[string]any)["expires"] =
				time.Now().Add(time.Hour).UTC().Format("2006-01-02T15:04:05.000Z")
			return q.create(t, task(def))
		}
		child1, child2 := slugid.Nice(), slugid.Nice()
		first := decision(child1)
		q.wantCompleted(t, first)
		second := decision(child2)
		q.wantCompleted(t, second)
		mustContain(t, q.logOf(t, second, 0, ""), "cache holds the checkout of "+first, " 200 OK")

		for _, child := range []string{child1, child2} {
			st, err := q.admin.Status(t.Context(), child)
			if err != nil {
				t.Fatalf("the task the decision task created: %v", err)
			}
			if st.Status.WorkerType != "gecko-child" || st.Status.SchedulerID != "gecko-level-1" {
				t.Errorf("created task %+v", st.Status)
			}
		}
		arts := q.artifacts(t, second, 0)
		for _, name := range []string{"public/decision.txt", chainoftrust.DocumentName, chainoftrust.SignatureName} {
			if _, ok := arts[name]; !ok {
				t.Errorf("no artifact %s; have %v", name, arts)
			}
		}
		body, h := q.rawArtifact(t, second, 0, "public/decision.txt")
		if h.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if body, err = io.ReadAll(zr); err != nil {
				t.Fatal(err)
			}
		}
		if !strings.Contains(string(body), "decision of 19d54f008cbc") {
			t.Errorf("public/decision.txt = %q", body)
		}
		if it, err := q.admin.FindTask(t.Context(), "gecko.v2.try.latest.firefox.decision"); err != nil || it.TaskID != second {
			t.Errorf("index gecko.v2.try.latest.firefox.decision: %+v, %v; want the second decision task %s", it, err, second)
		}
	})

	t.Run("07 vcs cache task", func(t *testing.T) {
		def := referenceTask(t, "07-taskcluster-vcs-cache-task-2015.task.json", nil)
		p := def["payload"].(map[string]any)
		p["image"] = image
		p["command"] = []string{"/bin/sh", "-c", vcsCache}
		namespace := "tc-vcs.v1.e2e." + strings.ToLower(slugid.Nice()[:8])
		p["env"].(map[string]any)["NAMESPACE"] = namespace
		task := newTask(dev, p)
		task["scopes"] = def["scopes"]
		id := q.create(t, task)
		q.wantCompleted(t, id)
		it, err := q.admin.FindTask(t.Context(), namespace)
		if err != nil || it.TaskID != id || string(it.Data) != `{"debug":"*"}` {
			t.Errorf("index %s: %+v, %v; want task %s with the task's DEBUG", namespace, it, err, id)
		}
	})

	t.Run("14a proxy task", func(t *testing.T) {
		doc := referenceTask(t, "14-docker-worker-test-proxy-and-retry.payloads.json", nil)
		def := doc["proxy_task"].(map[string]any)
		p := def["payload"].(map[string]any)
		p["image"] = image
		// Its curl command with busybox wget.
		p["command"] = []string{"/bin/sh", "-c", postCustom(time.Now().Add(10 * time.Minute))}
		task := newTask(dev, p)
		task["scopes"] = def["scopes"]
		id := q.create(t, task)
		q.wantCompleted(t, id)
		if a, ok := q.artifacts(t, id, 0)["custom"]; !ok || a.StorageType != "reference" {
			t.Errorf("artifact custom = %+v (present %v), want a reference artifact", a, ok)
		}
	})
}

// wantCompleted waits for run 0 of id to complete, and shows its log if it
// does not.
func (q *queueEnv) wantCompleted(t *testing.T, id string) {
	t.Helper()
	if s := q.waitRun(t, id, 0, 2*time.Minute); s.Runs[0].State != tc.StateCompleted {
		t.Fatalf("run 0 of %s: %s/%s, want completed; log:\n%s", id, s.Runs[0].State, s.Runs[0].ReasonResolved, q.logOf(t, id, 0, ""))
	}
}
