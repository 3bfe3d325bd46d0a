package e2e

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// bewitScript asks the proxy at http://taskcluster to sign $URL (POST
// /bewit, in plain HTTP/1.0 through nc: wget would follow the 303) and
// prints the status line and the signed URL.
const bewitScript = `set -e
resp=$(printf 'POST /bewit HTTP/1.0\r\nHost: taskcluster\r\nContent-Length: %d\r\n\r\n%s' ${#URL} "$URL" | nc taskcluster 80)
echo "$resp" | head -n 1
echo "signed=$(echo "$resp" | sed -n 's/^Location: \(.*\)\r$/\1/p')"
printf 'PUT /credentials HTTP/1.0\r\nHost: taskcluster\r\nContent-Length: 2\r\n\r\n{}' | nc taskcluster 80 | head -n 1`

var signedLine = regexp.MustCompile(`(?m)^signed=(\S+)`)

// A task signs the URL of a private artifact through its proxy's /bewit;
// the signed URL fetches the artifact without credentials (the queue
// listens on the host's loopback, which the container cannot reach, so
// the test fetches it). The proxy refuses new credentials.
func TestProxyBewitFetchesPrivateArtifact(t *testing.T) {
	dockertest.Require(t)
	q := startQueue(t, nil)
	cfg := q.workerConfig("proxy-bewit")
	startWorker(t, q, cfg)
	const secret = "only with the task's scopes\n"
	holder := q.publish(t, nil, published{name: "private/secret.txt", body: []byte(secret)})
	target := q.rootURL + "/api/queue/v1/task/" + holder + "/runs/0/artifacts/private/secret.txt"

	p := shell(bewitScript, 60)
	p["features"] = map[string]any{"taskclusterProxy": true}
	p["env"] = map[string]any{"URL": target}
	id := q.create(t, withScopes(newTask(cfg, p), "queue:get-artifact:private/secret.txt"))
	s := q.waitRun(t, id, 0, 2*time.Minute)
	log := q.logOf(t, id, 0, "")
	wantState(t, s, 0, tc.StateCompleted, "")
	mustContain(t, log, " 303 See Other", " 403 Forbidden")
	m := signedLine.FindStringSubmatch(log)
	if m == nil || !strings.HasPrefix(m[1], target+"?bewit=") {
		t.Fatalf("no signed URL for %s in the log:\n%s", target, log)
	}

	get := func(u string) (int, string) {
		res, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if status, body := get(m[1]); status != http.StatusOK || body != secret {
		t.Errorf("GET the signed URL: %d %q, want 200 %q", status, body, secret)
	}
	if status, body := get(target); status != http.StatusForbidden {
		t.Errorf("GET without the bewit: %d %s, want 403", status, body)
	}
}
