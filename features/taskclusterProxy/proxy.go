// Package taskclusterproxy is the payload feature "taskclusterProxy": the
// task reaches Taskcluster at http://taskcluster (TASKCLUSTER_PROXY_URL),
// and the worker forwards each request to the deployment's root URL signed
// with the run's current temporary credentials, restricted (Hawk
// authorizedScopes) to the task's scopes plus
// queue:create-artifact:<taskId>/<runId>, as docker-worker's
// taskcluster-proxy side container did.
//
// # Design
//
// The proxy runs inside the worker process (worker/tcproxy): no side
// container, no image to pull, and no credentials on a command line or
// pushed to another process at each reclaim; [features.Task.Credentials]
// is read for every request, so a reclaim takes effect on the next one.
//
// # Isolation
//
// Every run that asks for the feature gets its own user-defined Docker
// bridge network, created in Prepare and labelled with the task, run and
// worker IDs; the task container joins it (NetworkMode) instead of the
// default bridge, and /etc/hosts maps "taskcluster" to the network's
// gateway, the host's own address on that bridge. The proxy listens on that
// address only, port 80, and serves only clients whose source address is
// inside the network's subnet (the gateway itself excluded). So:
//
//   - a task reaches its own proxy and no other: another task's proxy is
//     bound to an address on another bridge, and even when the host routes
//     a connection there (traffic to the host's own addresses is not
//     forwarded, so Docker's inter-network isolation does not apply) the
//     source address is outside that proxy's subnet and it answers 403;
//   - tasks without the feature stay on the default bridge and reach no
//     proxy;
//   - host processes are refused (their source is the gateway or another
//     host address).
//
// The network is removed in Cleanup (after the runner removed the
// container; any endpoint still attached is disconnected first). Before the
// first claim every network labelled with this worker's ID is removed, and
// before creating one the feature removes this worker's networks whose run
// is no longer in progress, so neither a crash nor a failed removal lets
// networks pile up and exhaust Docker's address pools.
//
// Differences from docker-worker: the container is not on the default
// bridge (so it cannot reach other task containers there, and a link to a
// container on the default bridge does not work with it); the proxy's
// /credentials endpoint refuses new credentials (403), since the proxy
// reads the run's current ones for every request, while POST /bewit signs
// a URL as taskcluster-proxy did (see worker/tcproxy); the worker must be able
// to bind port 80 (run as root, or with CAP_NET_BIND_SERVICE) and must run
// on the Docker host itself (not in a container), since it binds the
// bridge's address.
package taskclusterproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/taskerr"
	"go.dockerworker.dev/docker-worker/worker/tcproxy"
)

// Name is the feature's payload key.
const Name = "taskclusterProxy"

// Hostname is the name the task reaches the proxy by, and URL the value of
// TASKCLUSTER_PROXY_URL.
const (
	Hostname = "taskcluster"
	URL      = "http://" + Hostname
)

// Labels on the per-run networks.
const (
	LabelPurpose  = "dev.dockerworker.purpose"
	LabelTaskID   = "dev.dockerworker.task-id"
	LabelRunID    = "dev.dockerworker.run-id"
	LabelWorkerID = "dev.dockerworker.worker-id"
	// Purpose is LabelPurpose's value on the feature's networks.
	Purpose = "taskcluster-proxy"
)

// Networks are the Docker network calls the feature makes
// (*docker.Client).
type Networks interface {
	CreateNetwork(ctx context.Context, name string, labels map[string]string) (docker.Network, error)
	ListNetworks(ctx context.Context, labels map[string]string) ([]docker.Network, error)
	RemoveNetwork(ctx context.Context, id string) error
}

// Config configures the feature.
type Config struct {
	// Networks creates and removes the per-run networks (nil: the feature
	// exists for payload checks only and fails tasks that ask for it).
	Networks Networks
	// WorkerID labels the networks; the start-up clean-up removes the
	// networks labelled with it.
	WorkerID string
	// Port is the port the proxy listens on (0: 80, the one tasks use).
	Port int
	// Transport sends the proxied requests (nil: http.DefaultTransport).
	Transport http.RoundTripper
	Logger    *slog.Logger
}

// Feature is the taskcluster proxy feature.
type Feature struct {
	cfg Config

	mu   sync.Mutex
	runs features.Runs // set by Init
}

var (
	_ features.Feature   = (*Feature)(nil)
	_ features.Extension = (*Feature)(nil)
)

// New returns the feature.
func New(cfg Config) *Feature {
	if cfg.Port == 0 {
		cfg.Port = 80
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Feature{cfg: cfg}
}

// Name implements features.Feature.
func (f *Feature) Name() string { return Name }

// Init implements features.Extension: before the first claim it removes
// the networks a previous process of this worker left behind.
func (f *Feature) Init(_ context.Context, h features.Host) error {
	if f.cfg.Networks == nil {
		return nil
	}
	f.mu.Lock()
	f.runs = h.Runs()
	f.mu.Unlock()
	h.BeforeFirstClaim(f.removeLeftovers)
	return nil
}

// removeLeftovers removes every proxy network labelled with this worker's
// ID (no run is in progress before the first claim).
func (f *Feature) removeLeftovers(ctx context.Context) error {
	return f.removeStale(ctx, func() []features.RunRef { return nil })
}

// removeStale removes the proxy networks labelled with this worker's ID
// whose run is not in progress. The runs are listed after the networks: a
// run is registered before it creates its network, so every listed network
// of a run in progress has its run in the list.
func (f *Feature) removeStale(ctx context.Context, runs func() []features.RunRef) error {
	nets, err := f.cfg.Networks.ListNetworks(ctx, map[string]string{LabelPurpose: Purpose, LabelWorkerID: f.cfg.WorkerID})
	if err != nil {
		return fmt.Errorf("list taskcluster proxy networks: %w", err)
	}
	live := runs()
	var errs []error
	for _, n := range nets {
		runID, _ := strconv.Atoi(n.Labels[LabelRunID])
		if slices.Contains(live, features.RunRef{TaskID: n.Labels[LabelTaskID], RunID: runID}) {
			continue
		}
		if err := f.cfg.Networks.RemoveNetwork(ctx, n.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		f.cfg.Logger.Info("removed a taskcluster proxy network left behind", "network", n.Name,
			"taskId", n.Labels[LabelTaskID], "runId", n.Labels[LabelRunID])
	}
	return errors.Join(errs...)
}

// NewTask implements features.Feature.
func (f *Feature) NewTask(t features.Task) (features.TaskFeature, error) {
	return &task{f: f, t: t}, nil
}

// task is one run's network and proxy.
type task struct {
	f *Feature
	t features.Task

	mu      sync.Mutex
	network *docker.Network
	srv     *http.Server
}

var (
	_ features.Preparer = (*task)(nil)
	_ features.Cleaner  = (*task)(nil)
)

// NetworkName is the name of the network of a run.
func NetworkName(taskID string, runID int) string {
	return "taskcluster-proxy-" + taskID + "-" + strconv.Itoa(runID)
}

// AuthorizedScopes are the scopes proxied requests are restricted to.
func AuthorizedScopes(t features.Task) []string {
	return append(append([]string{}, t.Scopes()...),
		fmt.Sprintf("queue:create-artifact:%s/%d", t.TaskID(), t.RunID()))
}

// Prepare creates the run's network, starts the proxy on its gateway and
// puts the container on the network.
func (k *task) Prepare(ctx context.Context, _ *features.PrepareRequest, resp *features.PrepareResponse) error {
	if k.f.cfg.Networks == nil {
		return taskerr.InternalError(errors.New("taskcluster proxy: this worker has no Docker networks"))
	}
	// A network whose Cleanup could not remove it (a container that would
	// not go away) is retried here, once its run is over.
	k.f.mu.Lock()
	runs := k.f.runs
	k.f.mu.Unlock()
	if runs != nil && k.f.cfg.WorkerID != "" {
		if err := k.f.removeStale(ctx, runs.List); err != nil {
			k.t.Logger().Warn("could not remove a stale taskcluster proxy network", "error", err)
		}
	}
	w := k.t.Worker()
	n, err := k.f.cfg.Networks.CreateNetwork(ctx, NetworkName(k.t.TaskID(), k.t.RunID()), map[string]string{
		LabelPurpose:  Purpose,
		LabelTaskID:   k.t.TaskID(),
		LabelRunID:    strconv.Itoa(k.t.RunID()),
		LabelWorkerID: w.WorkerID,
	})
	if err != nil {
		return taskerr.InternalError(fmt.Errorf("initialize the taskcluster proxy: %w", err))
	}
	k.mu.Lock()
	k.network = &n
	k.mu.Unlock()

	subnet, gateway := n.Subnet, n.Gateway
	p, err := tcproxy.New(tcproxy.Config{
		RootURL:          w.RootURL,
		Credentials:      k.credentials,
		AuthorizedScopes: AuthorizedScopes(k.t),
		Allow:            func(a netip.Addr) bool { return subnet.Contains(a) && a != gateway },
		Transport:        k.f.cfg.Transport,
		Logger:           k.t.Logger(),
	})
	if err != nil {
		return taskerr.InternalError(fmt.Errorf("initialize the taskcluster proxy: %w", err))
	}
	addr := netip.AddrPortFrom(gateway, uint16(k.f.cfg.Port)).String()
	var l net.Listener
	// The bridge's address may take a moment to appear on the host.
	for attempt := 0; ; attempt++ {
		var lc net.ListenConfig
		if l, err = lc.Listen(ctx, "tcp", addr); err == nil || attempt == 20 || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return taskerr.InternalError(fmt.Errorf("initialize the taskcluster proxy: listen on %s: %w", addr, err))
	}
	k.mu.Lock()
	k.srv = p.Serve(l)
	k.mu.Unlock()

	resp.NetworkMode = n.Name
	resp.ExtraHosts = append(resp.ExtraHosts, Hostname+":"+gateway.String())
	if resp.Env == nil {
		resp.Env = map[string]string{}
	}
	resp.Env["TASKCLUSTER_PROXY_URL"] = URL
	k.t.Logger().Info("taskcluster proxy listening", "network", n.Name, "address", addr, "subnet", subnet.String())
	return nil
}

// credentials are the run's current credentials.
func (k *task) credentials() tcproxy.Credentials {
	c := k.t.Credentials()
	return tcproxy.Credentials{ClientID: c.ClientID, AccessToken: c.AccessToken, Certificate: c.Certificate}
}

// Cleanup stops the proxy and removes the network (retried a few times: the
// container may still be going away).
func (k *task) Cleanup(ctx context.Context) error {
	k.mu.Lock()
	srv, n := k.srv, k.network
	k.srv, k.network = nil, nil
	k.mu.Unlock()
	var errs []error
	if srv != nil {
		if err := srv.Close(); err != nil {
			errs = append(errs, fmt.Errorf("stop taskcluster proxy: %w", err))
		}
	}
	if n != nil {
		if err := k.removeNetwork(ctx, n.ID); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeNetwork removes the network, trying again a few times while ctx
// allows.
func (k *task) removeNetwork(ctx context.Context, id string) error {
	for attempt := 1; ; attempt++ {
		err := k.f.cfg.Networks.RemoveNetwork(ctx, id)
		if err == nil || attempt == 5 {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt) * 500 * time.Millisecond):
		}
	}
}
