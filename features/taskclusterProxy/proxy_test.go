package taskclusterproxy_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/features/featuretest"
	taskclusterproxy "go.dockerworker.dev/docker-worker/features/taskclusterProxy"
	"go.dockerworker.dev/docker-worker/worker/docker"
)

// fakeNetworks hands out one network on the loopback interface: subnet
// 127.0.0.0/8 with "gateway" 127.0.0.2, so a test client (source
// 127.0.0.1) counts as inside the network.
type fakeNetworks struct {
	mu      sync.Mutex
	nets    map[string]docker.Network
	removed []string
	failAll error
}

func (f *fakeNetworks) CreateNetwork(_ context.Context, name string, labels map[string]string) (docker.Network, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failAll != nil {
		return docker.Network{}, f.failAll
	}
	n := docker.Network{ID: "id-" + name, Name: name, Labels: labels,
		Subnet: netip.MustParsePrefix("127.0.0.0/8"), Gateway: netip.MustParseAddr("127.0.0.2")}
	if f.nets == nil {
		f.nets = map[string]docker.Network{}
	}
	f.nets[n.ID] = n
	return n, nil
}

func (f *fakeNetworks) ListNetworks(_ context.Context, labels map[string]string) ([]docker.Network, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []docker.Network
next:
	for _, n := range f.nets {
		for k, v := range labels {
			if n.Labels[k] != v {
				continue next
			}
		}
		out = append(out, n)
	}
	return out, nil
}

func (f *fakeNetworks) RemoveNetwork(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.nets, id)
	f.removed = append(f.removed, id)
	return nil
}

// freePort returns a port free on 127.0.0.2.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.2: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestPrepareServesTheTaskAndCleansUp(t *testing.T) {
	var auth string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = r.Header.Get("Authorization")
		io.WriteString(w, r.Method+" "+r.URL.RequestURI())
	}))
	t.Cleanup(up.Close)
	nets := &fakeNetworks{}
	port := freePort(t)
	f := taskclusterproxy.New(taskclusterproxy.Config{Networks: nets, WorkerID: "w1", Port: port})
	task := &featuretest.Task{ID: "T1", Run: 2, Scope: []string{"queue:create-artifact:custom", "secrets:get:x"},
		Creds: features.Credentials{ClientID: "task-client/T1/2", AccessToken: "at", Certificate: `{"version":1}`},
		Info:  features.WorkerInfo{RootURL: up.URL, WorkerID: "w1"}}
	tf, err := f.NewTask(task)
	if err != nil {
		t.Fatal(err)
	}
	var resp features.PrepareResponse
	if err := tf.(features.Preparer).Prepare(t.Context(), &features.PrepareRequest{}, &resp); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	want := features.PrepareResponse{
		NetworkMode: "taskcluster-proxy-T1-2",
		ExtraHosts:  []string{"taskcluster:127.0.0.2"},
		Env:         map[string]string{"TASKCLUSTER_PROXY_URL": "http://taskcluster"},
	}
	if diff := cmp.Diff(want, resp); diff != "" {
		t.Errorf("PrepareResponse (-want +got):\n%s", diff)
	}
	n := nets.nets["id-taskcluster-proxy-T1-2"]
	if diff := cmp.Diff(map[string]string{"dev.dockerworker.purpose": "taskcluster-proxy",
		"dev.dockerworker.task-id": "T1", "dev.dockerworker.run-id": "2", "dev.dockerworker.worker-id": "w1"}, n.Labels); diff != "" {
		t.Errorf("network labels (-want +got):\n%s", diff)
	}

	proxyURL := "http://" + netip.AddrPortFrom(n.Gateway, uint16(port)).String()
	res, err := http.Get(proxyURL + "/queue/v1/task/T1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(body) != "GET /api/queue/v1/task/T1" {
		t.Errorf("got %d %q, want the upstream's answer to GET /api/queue/v1/task/T1", res.StatusCode, body)
	}
	m := regexp.MustCompile(`ext="([^"]*)"`).FindStringSubmatch(auth)
	if m == nil || !regexp.MustCompile(`id="task-client/T1/2"`).MatchString(auth) {
		t.Fatalf("Authorization %q: want a Hawk header of the run's credentials with ext", auth)
	}
	raw, _ := base64.StdEncoding.DecodeString(m[1])
	var ext struct {
		AuthorizedScopes []string `json:"authorizedScopes"`
	}
	json.Unmarshal(raw, &ext)
	if diff := cmp.Diff([]string{"queue:create-artifact:custom", "secrets:get:x", "queue:create-artifact:T1/2"}, ext.AuthorizedScopes); diff != "" {
		t.Errorf("authorizedScopes (-want +got):\n%s", diff)
	}

	c := tf.(features.Cleaner)
	if err := c.Cleanup(t.Context()); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if err := c.Cleanup(t.Context()); err != nil {
		t.Fatalf("second Cleanup: %v", err)
	}
	if len(nets.nets) != 0 || !slices.Equal(nets.removed, []string{"id-taskcluster-proxy-T1-2"}) {
		t.Errorf("networks left %v, removed %v: want the run's network removed once", nets.nets, nets.removed)
	}
	if _, err := http.Get(proxyURL + "/queue/v1/task/T1"); err == nil {
		t.Errorf("the proxy still answers after Cleanup")
	}
}

func TestPrepareFailsWhenNoNetwork(t *testing.T) {
	nets := &fakeNetworks{failAll: errors.New("no free address pool")}
	tf, _ := taskclusterproxy.New(taskclusterproxy.Config{Networks: nets}).NewTask(&featuretest.Task{ID: "T"})
	err := tf.(features.Preparer).Prepare(t.Context(), &features.PrepareRequest{}, &features.PrepareResponse{})
	if err == nil || !regexp.MustCompile(`no free address pool`).MatchString(err.Error()) {
		t.Errorf("Prepare = %v, want the network error", err)
	}
	if err := tf.(features.Cleaner).Cleanup(t.Context()); err != nil {
		t.Errorf("Cleanup after a failed Prepare: %v", err)
	}
}

// host records the hooks an extension registers.
type host struct {
	first []features.StartHook
	live  []features.RunRef
}

func (h *host) BeforeClaim(features.BeforeClaimHook)  {}
func (h *host) AfterClaim(features.AfterClaimHook)    {}
func (h *host) BeforeFirstClaim(s features.StartHook) { h.first = append(h.first, s) }
func (h *host) Observe(features.Observer)             {}
func (h *host) Runs() features.Runs                   { return h }

func (h *host) Cancel(string, int, error) bool { return false }
func (h *host) List() []features.RunRef        { return h.live }

// Before creating its network a run removes this worker's networks whose
// run is over (a removal that failed earlier), and keeps those of runs in
// progress.
func TestPrepareRemovesStaleNetworks(t *testing.T) {
	nets := &fakeNetworks{}
	ctx := t.Context()
	label := func(task string) map[string]string {
		return map[string]string{"dev.dockerworker.purpose": "taskcluster-proxy", "dev.dockerworker.worker-id": "w1",
			"dev.dockerworker.task-id": task, "dev.dockerworker.run-id": "0"}
	}
	nets.CreateNetwork(ctx, "over", label("OVER"))
	nets.CreateNetwork(ctx, "running", label("RUNNING"))
	h := &host{live: []features.RunRef{{TaskID: "RUNNING"}, {TaskID: "NEW"}}}
	f := taskclusterproxy.New(taskclusterproxy.Config{Networks: nets, WorkerID: "w1", Port: freePort(t)})
	if err := f.Init(ctx, h); err != nil {
		t.Fatal(err)
	}
	tf, _ := f.NewTask(&featuretest.Task{ID: "NEW", Info: features.WorkerInfo{RootURL: "http://127.0.0.1:1", WorkerID: "w1"}})
	if err := tf.(features.Preparer).Prepare(ctx, &features.PrepareRequest{}, &features.PrepareResponse{}); err != nil {
		t.Fatal(err)
	}
	defer tf.(features.Cleaner).Cleanup(ctx)
	if !slices.Equal(nets.removed, []string{"id-over"}) {
		t.Errorf("removed %v, want only id-over", nets.removed)
	}
}

func TestStartRemovesThisWorkersLeftovers(t *testing.T) {
	nets := &fakeNetworks{}
	ctx := t.Context()
	mine := map[string]string{"dev.dockerworker.purpose": "taskcluster-proxy", "dev.dockerworker.worker-id": "w1"}
	other := map[string]string{"dev.dockerworker.purpose": "taskcluster-proxy", "dev.dockerworker.worker-id": "w2"}
	nets.CreateNetwork(ctx, "a", mine)
	nets.CreateNetwork(ctx, "b", other)
	nets.CreateNetwork(ctx, "c", map[string]string{"dev.dockerworker.worker-id": "w1"})
	h := &host{}
	if err := taskclusterproxy.New(taskclusterproxy.Config{Networks: nets, WorkerID: "w1"}).Init(ctx, h); err != nil {
		t.Fatal(err)
	}
	if len(h.first) != 1 {
		t.Fatalf("%d BeforeFirstClaim hooks, want 1", len(h.first))
	}
	if err := h.first[0](ctx); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(nets.removed, []string{"id-a"}) {
		t.Errorf("removed %v, want only this worker's proxy network id-a", nets.removed)
	}
}
