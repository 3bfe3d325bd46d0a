// Package capabilities is the always-on built-in feature serving the
// payload's capabilities.privileged and capabilities.disableSeccomp.
//
// capabilities.privileged: the task needs scope
// docker-worker:capability:privileged (or its per-pool form
// docker-worker:capability:privileged:<provisionerId>/<workerType>) and the
// worker needs config dockerConfig.allowPrivileged, each refused with
// docker-worker's message; then the container runs privileged.
//
// capabilities.disableSeccomp: the task needs scope
// docker-worker:capability:disableSeccomp (or its per-pool form) and the
// worker needs config dockerConfig.allowDisableSeccomp; then the container
// runs without a seccomp profile (security option seccomp=unconfined).
// Scopes are checked as the task gives them, roles not expanded, as for
// privileged.
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

// SeccompScope is the disableSeccomp capability scope; the per-pool form
// appends ":<provisionerId>/<workerType>".
const SeccompScope = "docker-worker:capability:disableSeccomp"

// Unconfined is the Docker security option of a container without a
// seccomp profile.
const Unconfined = "seccomp=unconfined"

// Config is what the worker allows.
type Config struct {
	// AllowPrivileged is dockerConfig.allowPrivileged.
	AllowPrivileged bool
	// AllowDisableSeccomp is dockerConfig.allowDisableSeccomp.
	AllowDisableSeccomp bool
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
func (f *Feature) Owns() []string {
	return []string{"capabilities.privileged", "capabilities.disableSeccomp"}
}

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

func (k *task) disableSeccomp() bool {
	p := k.t.Payload()
	return p != nil && p.Capabilities != nil && p.Capabilities.DisableSeccomp
}

// RequiredScopes implements features.ScopeRequirer.
func (k *task) RequiredScopes() []features.ScopeRequirement {
	var out []features.ScopeRequirement
	pool := k.t.Worker().Pool()
	if k.privileged() {
		out = append(out, features.ScopeRequirement{
			AnyOf:   []string{Scope, Scope + ":" + pool},
			Message: "Insufficient scopes to run task in privileged mode. Try adding " + Scope + ":" + pool + " to the .scopes array",
		})
	}
	if k.disableSeccomp() {
		out = append(out, features.ScopeRequirement{
			AnyOf:   []string{SeccompScope, SeccompScope + ":" + pool},
			Message: "Insufficient scopes to run task without seccomp. Try adding " + SeccompScope + ":" + pool + " to the .scopes array",
		})
	}
	return out
}

// errNotAllowed is docker-worker's message for a worker that does not
// allow privileged tasks.
var errNotAllowed = errors.New("Cannot run task using docker privileged mode.  Worker must be enabled to allow running of privileged tasks.")

// errSeccompNotAllowed is the message, in docker-worker's style, for a
// worker that does not allow tasks without a seccomp profile.
var errSeccompNotAllowed = errors.New("Cannot run task using docker without a seccomp profile.  Worker must be enabled to allow running of tasks without seccomp (dockerConfig.allowDisableSeccomp).")

// Prepare implements features.Preparer.
func (k *task) Prepare(_ context.Context, _ *features.PrepareRequest, resp *features.PrepareResponse) error {
	var errs []error
	if k.privileged() {
		if k.f.cfg.AllowPrivileged {
			resp.Privileged = true
		} else {
			errs = append(errs, errNotAllowed)
		}
	}
	if k.disableSeccomp() {
		if k.f.cfg.AllowDisableSeccomp {
			resp.SecurityOpt = append(resp.SecurityOpt, Unconfined)
		} else {
			errs = append(errs, errSeccompNotAllowed)
		}
	}
	return errors.Join(errs...)
}
