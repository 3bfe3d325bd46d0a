package wiring

import (
	"time"

	"go.dockerworker.dev/docker-worker/features/image"
	"go.dockerworker.dev/docker-worker/features/interactive"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/docker"
)

// interactiveFeature builds the interactive shell feature; its server
// starts with the first task that asks for it.
func interactiveFeature(cfg *config.Config, opts Options, d image.Docker) *interactive.Feature {
	ic := cfg.Interactive
	sc := interactive.ServerConfig{
		Address:      ic.BindAddress,
		Port:         ic.Port,
		PortRangeEnd: ic.PortRangeEnd,
		Logger:       opts.Logger.With("feature", interactive.Name),
	}
	if ic.SSL {
		sc.CertFile, sc.KeyFile = cfg.SSL.Certificate, cfg.SSL.Key
	}
	var ex interactive.Execer
	if t, ok := d.(trackedImages); ok {
		d = t.Docker
	}
	if c, ok := d.(*docker.Client); ok && c != nil {
		ex = interactive.DockerExecer{Client: c}
	}
	return interactive.New(interactive.Config{
		MinTime:                time.Duration(ic.MinTime) * time.Second,
		ExpirationAfterSession: time.Duration(ic.ExpirationAfterSession) * time.Second,
		ArtifactPrefix:         ic.ArtifactName,
		TempDir:                opts.TempDir,
		Server:                 sc,
	}, ex)
}
