// Package worker is the core of docker-worker: the claim loop that keeps up
// to `capacity` tasks running, and the per-task runner that calls the
// feature phases (see package features) around the task container and
// resolves the run.
//
// It depends on narrow interfaces for the queue ([Queue], [RunQueue]) and
// for Docker ([Docker]); cmd/docker-worker wires the real implementations
// and the feature list. It never imports a concrete feature.
package worker
