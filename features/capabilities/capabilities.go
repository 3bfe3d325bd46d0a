// Package capabilities is the always-on built-in feature serving the
// payload's capabilities section. Today that is capabilities.privileged:
// the task needs scope docker-worker:capability:privileged (or its
// per-pool form docker-worker:capability:privileged:<provisionerId>/<workerType>)
// and the worker needs config dockerConfig.allowPrivileged, each refused
// with docker-worker's message; then the container runs privileged.
package capabilities

import (
	"context"
	"errors"

	"go.dockerworker.dev/docker-worker/features"
)

// Name is the feature's name in worker logs.
const Name = "capabilities"

// Scope is the privileged capability scope; the per-pool form appends
// ":<provisionerId>/<workerType>".
const Scope = "docker-worker:capability:privileged"

// Config is what the worker allows.
type Config struct {
	// AllowPrivileged is dockerConfig.allowPrivileged.
	AllowPrivileged bool
}

// Feature serves payload.capabilities.
type Feature struct{ cfg Config }

var (
	_ features.Feature  = (*Feature)(nil)
	_ features.AlwaysOn = (*Feature)(nil)
	_ features.Owner    = (*Feature)(nil)
)

// New returns the feature.
func New(cfg Config) *Feature { return &Feature{cfg: cfg} }

// Name implements features.Feature.
func (f *Feature) Name() string { return Name }

// AlwaysOn implements features.AlwaysOn.
func (f *Feature) AlwaysOn() bool { return true }

// Owns implements features.Owner.
func (f *Feature) Owns() []string { return []string{"capabilities.privileged"} }

// NewTask implements features.Feature.
func (f *Feature) NewTask(t features.Task) (features.TaskFeature, error) {
	return &task{f: f, t: t}, nil
}

type task struct {
	f *Feature
	t features.Task
}

var (
	_ features.ScopeRequirer = (*task)(nil)
	_ features.Preparer      = (*task)(nil)
)

func (k *task) privileged() bool {
	p := k.t.Payload()
	return p != nil && p.Capabilities != nil && p.Capabilities.Privileged
}

// RequiredScopes implements features.ScopeRequirer.
func (k *task) RequiredScopes() []features.ScopeRequirement {
	if !k.privileged() {
		return nil
	}
	pool := k.t.Worker().Pool()
	return []features.ScopeRequirement{{
		AnyOf:   []string{Scope, Scope + ":" + pool},
		Message: "Insufficient scopes to run task in privileged mode. Try adding " + Scope + ":" + pool + " to the .scopes array",
	}}
}

// errNotAllowed is docker-worker's message for a worker that does not
// allow privileged tasks.
var errNotAllowed = errors.New("Cannot run task using docker privileged mode.  Worker must be enabled to allow running of privileged tasks.")

// Prepare implements features.Preparer.
func (k *task) Prepare(_ context.Context, _ *features.PrepareRequest, resp *features.PrepareResponse) error {
	if !k.privileged() {
		return nil
	}
	if !k.f.cfg.AllowPrivileged {
		return errNotAllowed
	}
	resp.Privileged = true
	return nil
}
