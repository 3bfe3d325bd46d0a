// Package localqueue is an embedded, Taskcluster-compatible queue service.
//
// It serves the queue's REST API under `<rootUrl>/api/queue/v1/` (the routes
// of the published api.json, answering with bodies that follow the published
// schemas) from an in-memory [Store], authenticates requests with Hawk
// (permanent clients from [Config] and the temporary credentials it hands out
// with each claim), and stores the bytes of `s3` artifacts under
// [Config].DataDir, reachable through signed URLs of the form
// `<rootUrl>/api/queue/v1/_store/<token>`.
//
// It is the queue a worker uses when it runs stand-alone, and the queue the
// worker's tests run against over real HTTP, so it must answer the way the
// real queue does: same status codes, same error codes, same state machine
// (pending → running → completed/failed/exception, retries on
// `worker-shutdown`, `intermittent-task` and `claim-expired`, resolution at
// the deadline).
//
// Not implemented yet: task dependencies (accepted and ignored: every task is
// pending as soon as it is created), scope enforcement (the authenticated
// scopes are kept on the request context for it), object artifacts, and the
// provisioner/worker bookkeeping endpoints.
package localqueue
