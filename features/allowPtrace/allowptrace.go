// Package allowptrace is the payload feature "allowPtrace": the task
// container gets the SYS_PTRACE capability, so that debuggers and tracers
// can attach to the task's processes. As in docker-worker the task needs
// scope docker-worker:feature:allowPtrace, checked against its scopes as
// they are (roles are not expanded).
package allowptrace

import (
	"context"

	"go.dockerworker.dev/docker-worker/features"
)

// Name is the feature's payload key.
const Name = "allowPtrace"

// Scope is the scope a task needs to use the feature.
const Scope = "docker-worker:feature:allowPtrace"

// Capability is the Linux capability added to the task container.
const Capability = "SYS_PTRACE"

// Feature is the allowPtrace feature.
type Feature struct{}

var _ features.Feature = (*Feature)(nil)

// New returns the feature.
func New() *Feature { return &Feature{} }

// Name implements features.Feature.
func (f *Feature) Name() string { return Name }

// NewTask implements features.Feature.
func (f *Feature) NewTask(features.Task) (features.TaskFeature, error) { return task{}, nil }

type task struct{}

var (
	_ features.ScopeRequirer = task{}
	_ features.Preparer      = task{}
)

// RequiredScopes implements features.ScopeRequirer with docker-worker's
// message.
func (task) RequiredScopes() []features.ScopeRequirement {
	return []features.ScopeRequirement{{
		AnyOf:   []string{Scope},
		Message: "Insufficient scopes to use '" + Name + "' feature.  Try adding " + Scope + " to the .scopes array.",
	}}
}

// Prepare implements features.Preparer.
func (task) Prepare(_ context.Context, _ *features.PrepareRequest, resp *features.PrepareResponse) error {
	resp.CapAdd = append(resp.CapAdd, Capability)
	return nil
}
