// Package worker is the core of docker-worker: the claim loop that keeps up
// to `capacity` tasks running, the worker-level surface extensions plug
// into (hooks before and after each claim and before the first, run event
// observers, the registry of runs in progress with Cancel by task and run
// ID), the typed stop (graceful or immediate), and the per-task runner that
// calls the feature phases (see package features) around the task
// container and resolves the run.
//
// It depends on narrow interfaces for the queue ([Queue], [StatusQueue],
// [RunQueue]) and for Docker ([Docker]). It never names a feature: which
// payload parts a worker serves, which scopes they need and where the task
// image comes from are the features' declarations, checked by
// [PayloadCheck]. worker/wiring builds a worker with the real clients and
// the feature list.
package worker
