package wiring

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/worker"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/shutdown"
	"go.dockerworker.dev/docker-worker/worker/tc"
	"go.dockerworker.dev/docker-worker/worker/workermanager"
)

// WorkerManagerTermination is the shutdown reason when worker-manager
// answered shouldWorkerTerminate with true.
const WorkerManagerTermination shutdown.Reason = "worker-manager"

// Registration is a worker registered with worker-manager by its
// provider section (see LoadConfig); Build renews its credentials, asks
// shouldWorkerTerminate and removes the worker when it shuts itself down.
type Registration struct {
	Identity workermanager.Identity
	First    *workermanager.Registration
	// CheckInterval is how often, at most, shouldWorkerTerminate is
	// asked (0: once a minute).
	CheckInterval time.Duration
}

// LoadConfig loads the worker's config (config.LoadWith with o). A file
// with a provider section is first registered with worker-manager: the
// worker's identity (static: the section's; aws: the instance's, from
// instance metadata) gets credentials and the worker pool's workerConfig,
// which is laid over the file; the credentials, the worker's identity and,
// on aws, the host facts are set over both. The Registration is nil
// without a provider section.
func LoadConfig(ctx context.Context, path string, o config.LoadOptions, logger *slog.Logger) (*config.Config, *Registration, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	pre, err := config.ReadProvider(path, o)
	if err != nil {
		return nil, nil, err
	}
	p := pre.Provider
	if p.ProviderType == "" {
		cfg, err := config.LoadWith(path, o)
		return cfg, nil, err
	}
	if o.RunnerKeys {
		return nil, nil, errors.New("provider: under worker-runner the runner registers the worker; remove the provider section")
	}
	var (
		id      workermanager.Identity
		rootURL = pre.RootURL
		facts   *workermanager.Facts
	)
	switch p.ProviderType {
	case config.ProviderStatic:
		providerID := p.ProviderID
		if providerID == "" {
			providerID = config.DefaultStaticProviderID
		}
		id = workermanager.Static(providerID, p.WorkerPoolID, p.WorkerGroup, p.WorkerID, p.StaticSecret)
		if p.RootURL != "" {
			rootURL = p.RootURL
		}
	case config.ProviderAWS:
		inst, err := workermanager.AWS(ctx, pre.MetadataURL())
		if err != nil {
			return nil, nil, fmt.Errorf("provider aws: %w", err)
		}
		id, rootURL, facts = inst.Identity, inst.UserData.RootURL, &inst.Facts
	}
	anonymous := tc.New(tc.Config{RootURL: rootURL})
	reg, err := workermanager.Register(ctx, anonymous, id, time.Time{})
	if err != nil {
		return nil, nil, fmt.Errorf("provider %s: %w", p.ProviderType, err)
	}
	logger.Info("registered with worker-manager", "providerType", p.ProviderType, "providerId", id.ProviderID,
		"workerPoolId", id.WorkerPoolID, "workerGroup", id.WorkerGroup, "workerId", id.WorkerID,
		"clientId", reg.Credentials.ClientID, "expires", reg.Expires)
	o.Registered = &config.Registered{
		WorkerConfig: reg.WorkerConfig,
		From:         "workerConfig of worker pool " + id.WorkerPoolID,
		Apply:        func(c *config.Config) { applyRegistration(c, rootURL, id, reg, facts) },
	}
	cfg, err := config.LoadWith(path, o)
	if err != nil {
		return nil, nil, err
	}
	return cfg, &Registration{Identity: id, First: reg}, nil
}

// applyRegistration sets what registration decided over the file and the
// pool's workerConfig.
func applyRegistration(c *config.Config, rootURL string, id workermanager.Identity, reg *workermanager.Registration, facts *workermanager.Facts) {
	c.RootURL = rootURL
	c.Taskcluster = config.Credentials{
		ClientID:    reg.Credentials.ClientID,
		AccessToken: reg.Credentials.AccessToken,
		Certificate: reg.Credentials.Certificate,
	}
	c.ProvisionerID, c.WorkerType, _ = strings.Cut(id.WorkerPoolID, "/")
	c.WorkerGroup, c.WorkerID = id.WorkerGroup, id.WorkerID
	if facts == nil {
		return
	}
	// The spot termination check reads the same metadata service.
	if c.Shutdown.MetadataEndpoint == "" {
		c.Shutdown.MetadataEndpoint = c.Provider.MetadataEndpoint
	}
	c.InstanceID, c.InstanceType, c.Region = facts.InstanceID, facts.InstanceType, facts.Region
	c.WorkerNodeType = facts.InstanceType
	c.PrivateIP, c.PublicIP = facts.PrivateIP, facts.PublicIP
	if facts.Host != "" {
		c.Host = facts.Host
	} else if facts.PublicIP != "" {
		c.Host = facts.PublicIP
	}
	c.WorkerLocation = facts.WorkerLocation
}

// providerExtensions wires a registration into the worker: renewal of the
// credentials in the background, shouldWorkerTerminate before claims,
// and removeWorker before the shutdown action. It runs after
// selfStopExtensions.
func (w *Worker) providerExtensions(reg *Registration, logger *slog.Logger) []features.Extension {
	s := workermanager.NewSession(workermanager.SessionConfig{
		Identity:       reg.Identity,
		First:          reg.First,
		Client:         w.Credentials.Client,
		SetCredentials: w.Credentials.Set,
		CheckInterval:  reg.CheckInterval,
		Logger:         logger.With("component", "worker-manager"),
	})
	w.self.action = workermanager.RemoveAction{Session: s, Then: w.self.action, Logger: logger.With("component", "worker-manager")}
	return []features.Extension{&providerExtension{self: w.self, session: s}}
}

// providerExtension renews the credentials from the first claim on, and
// asks shouldWorkerTerminate before claims (at most once per check
// interval): on true the worker stops claiming, lets its running tasks
// finish and shuts down (removeWorker, then the shutdown action).
type providerExtension struct {
	self    *selfStop
	session *workermanager.Session
}

var _ features.Extension = (*providerExtension)(nil)

func (e *providerExtension) Init(_ context.Context, h features.Host) error {
	h.BeforeFirstClaim(func(context.Context) error {
		e.self.background(e.session.RunRenewal)
		return nil
	})
	h.BeforeClaim(func(ctx context.Context, want int) (int, string) {
		if e.self.reason() == WorkerManagerTermination {
			return 0, "worker-manager asked the worker to terminate"
		}
		terminate, reason := e.session.ShouldTerminate(ctx)
		if !terminate {
			return want, ""
		}
		e.self.logger.Info("worker-manager asks the worker to terminate: finishing running tasks, claiming no more", "reason", reason)
		e.self.request(worker.StopGraceful, WorkerManagerTermination)
		return 0, "worker-manager asked the worker to terminate: " + reason
	})
	return nil
}
