package wiring

import (
	"go.dockerworker.dev/docker-worker/features/devices"
	"go.dockerworker.dev/docker-worker/worker/config"
	workerdevices "go.dockerworker.dev/docker-worker/worker/devices"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// devicesFeature builds the devices feature: the managers configured in
// deviceManagement (and restrictCPU), discovered under
// deviceManagement.root; task scopes are expanded with the worker's
// credentials, as for caches.
func devicesFeature(cfg *config.Config, opts Options) *devices.Feature {
	return devices.New(devices.Config{
		Devices: workerdevices.Discover(workerdevices.Config{
			Root:    cfg.DeviceManagement.Root,
			Enabled: cfg.DevicesEnabled(),
		}),
		Expander: taskclusterCalls{
			worker:    opts.Credentials,
			anonymous: tc.New(tc.Config{RootURL: cfg.RootURL}),
		},
		Logger: opts.Logger.With("feature", devices.Name),
	})
}
