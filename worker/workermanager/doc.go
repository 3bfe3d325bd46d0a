// Package workermanager is the worker's side of Taskcluster's
// worker-manager for a worker that runs alone, without worker-runner: it
// finds the worker's identity (a static worker's configured secret, or an
// EC2 instance's identity document and user-data read from instance
// metadata over IMDSv2), registers it (registerWorker) for credentials
// and the worker pool's workerConfig, renews the credentials
// (reregisterWorker) well before they expire, asks whether the worker
// should terminate (shouldWorkerTerminate), and removes it
// (removeWorker) when it shuts itself down.
package workermanager
