package wiring

import (
	"context"
	"sync/atomic"

	"go.dockerworker.dev/docker-worker/worker"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// WorkerCredentials are the worker's own Taskcluster credentials, shared
// by every client that signs with them: the claim loop (claimWork, task
// status) and the features' auth and purge-cache calls. Set replaces them
// for every later call; a call already under way finishes with the ones
// it started with, and runs keep their own temporary credentials, so no
// claim is dropped. Safe for concurrent use.
type WorkerCredentials struct {
	client atomic.Pointer[tc.Client]
	// failed is told about calls that failed for good (see
	// tc.Config.OnFailure), by this client and the run clients made from
	// it; nil until Build wires it.
	failed atomic.Pointer[func(tc.FailedCall)]
}

// NewWorkerCredentials returns the credentials of cfg (taskcluster.*)
// for calls under cfg.RootURL.
func NewWorkerCredentials(cfg *config.Config) *WorkerCredentials {
	w := &WorkerCredentials{}
	w.client.Store(tc.New(tc.Config{RootURL: cfg.RootURL, Credentials: &tc.Credentials{
		ClientID:    cfg.Taskcluster.ClientID,
		AccessToken: cfg.Taskcluster.AccessToken,
		Certificate: cfg.Taskcluster.Certificate,
	}, OnFailure: w.callFailed}))
	return w
}

// callFailed passes a failed call on to the function onFailure set.
func (w *WorkerCredentials) callFailed(fc tc.FailedCall) {
	if f := w.failed.Load(); f != nil {
		(*f)(fc)
	}
}

// onFailure makes f the receiver of the calls that fail for good.
func (w *WorkerCredentials) onFailure(f func(tc.FailedCall)) { w.failed.Store(&f) }

// Set makes c the worker's credentials from now on.
func (w *WorkerCredentials) Set(c tc.Credentials) {
	w.client.Store(w.client.Load().WithCredentials(c))
}

// Client is a client signing with the current credentials.
func (w *WorkerCredentials) Client() *tc.Client { return w.client.Load() }

var _ worker.Queue = (*WorkerCredentials)(nil)

// ClaimWork implements worker.Queue with the current credentials.
func (w *WorkerCredentials) ClaimWork(ctx context.Context, taskQueueID string, req tc.ClaimWorkRequest) (*tc.ClaimWorkResponse, error) {
	return w.Client().ClaimWork(ctx, taskQueueID, req)
}

// Status implements worker.StatusQueue with the current credentials.
func (w *WorkerCredentials) Status(ctx context.Context, taskID string) (*tc.TaskStatusResponse, error) {
	return w.Client().Status(ctx, taskID)
}
