// Package localqueue is an embedded, Taskcluster-compatible queue service.
//
// It serves the queue's REST API under `<rootUrl>/api/queue/v1/`, the
// part of the object service that object artifacts need under
// `<rootUrl>/api/object/v1/`, the index service under
// `<rootUrl>/api/index/v1/`, the purge-cache service under
// `<rootUrl>/api/purge-cache/v1/` and the auth service's expandScopes and
// currentScopes under `<rootUrl>/api/auth/v1/` (the routes of the
// published api.json, answering with bodies that follow the published
// schemas). Tasks that complete are indexed under their
// `index.<namespace>` routes, as the real index service does. Requests are
// authenticated with Hawk (permanent clients from [Config], temporary
// credentials the queue issues with each claim and for object uploads,
// `authorizedScopes`) and authorized with each route's scope expression;
// requests without credentials get [Config].AnonymousScopes. Scopes are
// expanded by [Config].Roles as the auth service's roles expand them. The
// Hawk nonces seen within the clock-skew window are kept in the [Store],
// so a captured request is refused after a restart too; named temporary
// credentials need their issuer to hold `auth:create-client:<name>`.
//
// State lives in a [Store]: [NewMemStore] for tests and throw-away queues,
// [OpenBoltStore] for a queue that survives restarts and crashes (every
// acknowledged change is on disk before the answer is sent). Changes made
// at once share one transaction and one fsync (group commit, see
// groupcommit.go): each is applied in memory at once, and each answer is
// held until every change before it is durable. Artifact and
// object bytes live in a [BlobStore]: by default files under
// [Config].DataDir served by the queue itself through signed URLs
// (`<rootUrl>/api/queue/v1/_store/<token>`), or an S3 bucket
// (package s3blob). With a [Publisher] (package pulse), state changes are
// announced on the queue's Pulse exchanges with the real routing keys and
// bodies, through a durable outbox, so a broker outage never blocks an API
// call.
//
// It is the queue a worker uses when it runs stand-alone, and the queue the
// worker's tests run against over real HTTP, so it must answer the way the
// real queue does: same status codes, same error codes and bodies, same
// state machine (unscheduled → pending → running →
// completed/failed/exception, dependencies with `all-completed` or
// `all-resolved`, retries on `worker-shutdown`, `intermittent-task` and
// `claim-expired`, resolution `deadline-exceeded` at the deadline, reruns).
//
// Not implemented: the provisioner/worker/task-queue bookkeeping endpoints
// (beyond pending and claimed counts), claimTask, task and task-group
// priority changes, task-group sealing and cancellation, and expiry of old
// tasks and artifacts.
package localqueue
