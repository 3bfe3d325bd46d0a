// Package features is the contract between the worker and the features that
// plug into it: payload features (artifacts, localLiveLog, ...), the
// always-on built-ins (the task log, the task image, capabilities), and
// worker services that take part in the worker's life.
//
// # Building and enabling
//
// A [Feature] is built once per worker process, in worker/wiring, and
// listed explicitly; the list's order is the order of every phase. Always-on
// features ([AlwaysOn]) take part in every task. A payload feature's name is
// its key under payload.features; it takes part when the worker enables it
// (config features.<name>.enabled, default on unless [WorkerDefaulter] says
// off) and the payload asks for it (explicitly, or by default when it is a
// [Defaulter]).
//
// # Owning the payload
//
// A payload is a set of sections (see schemas.Payload.Sections): the image
// type, caches, each capability and device, each feature switched on. Every
// section must be served by an enabled feature: a payload feature serves
// features.<name>, and an [Owner] names the other sections it serves. The
// runner refuses a payload using a section no enabled feature owns as
// malformed-payload, listing every such section in the task log; the worker
// core names no feature. A [PayloadChecker] refuses values the schema
// accepts but that can never work (an artifact name the queue cannot store,
// an image reference Docker cannot parse), the same way, with the schema's
// problems. `docker-worker validate` runs the same checks.
//
// # Per-task lifecycle
//
// For every claimed task the runner calls [Feature.NewTask] (no side
// effects; (nil, nil) means "nothing to do"), then the optional phase
// interfaces the [TaskFeature] implements, found by type assertion, in
// list order unless said otherwise:
//
//  1. [Opener]: first, before the payload is validated, so the task log
//     has its sinks from the first line (a malformed payload still gets a
//     log). Only always-on features are opened before validation; payload
//     features are opened right after it, and their sinks first receive what
//     the log already holds (the header), so every sink sees the whole log.
//  2. [ScopeRequirer]: the scopes the payload's use of the feature needs,
//     checked against the task's scopes once, before anything is fetched;
//     an unmet requirement fails the run with its message.
//  3. [ImageProvider]: the feature owning "image.<type>" provides the task
//     image, before Prepare, so that Preparers can read its configuration.
//  4. [Preparer]: features declare what they contribute to the container
//     (env, mounts, devices, hosts, links, network, security options,
//     cpuset, an entrypoint wrapper, log lines) in a [PrepareResponse];
//     the runner merges the responses, refuses clashes as an internal error
//     (never a panic) and applies them. Prepare stops at the first error.
//     Features never change runner state.
//  5. [Starter]: after the container started.
//  6. [Exiter]: after the container exited on its own (not after an abort,
//     cancellation or maxRunTime kill): upload payload artifacts and the
//     like.
//  7. [Finisher]: once the footer is written and the task log is sealed
//     (later writes are dropped), on every path that resolves the run
//     (including malformed payloads and aborts) but not when the queue
//     cancelled the run: upload logs.
//  8. [Cleaner]: always, for every feature whose NewTask succeeded, in
//     reverse order, even after a failed phase. Cleanup must be idempotent.
//
// A panic in any phase is recovered and resolves the run as an internal
// error; the worker goes on.
//
// # Contexts and deadlines
//
// Phase contexts up to Exited are the task context: it is cancelled when
// the task is aborted (the queue cancelled the run, a reclaim failed, the
// deadline passed, or the worker stops immediately); [context.Cause] tells
// why. A graceful worker stop does not cancel task contexts. Finish and
// Cleanup get contexts that an abort does not cancel (so logs still
// upload), each with its own deadline; killing and removing the container
// and reporting the resolution have their own deadlines too.
//
// # Errors
//
// A phase returns an error wrapped with a resolution from worker/taskerr
// (taskerr.MalformedPayload, taskerr.ResourceUnavailable, ...); plain errors
// resolve the run as failed. The runner joins the errors of all features and
// classifies them once.
//
// # Worker-level hooks
//
// A feature (or a service listed beside the features) that implements
// [Extension] is initialised once before the first claim and may register,
// on the [Host]: a hook before each claim that lowers how many tasks may be
// claimed (disk, devices, an unusable certificate), a hook after each claim,
// a hook once before the first claim (recovery), and an [Observer] of run
// events (claimed, phase reached, first output, resolved, and what the run
// fetched, mounted and uploaded: image ready, cache used, artifact
// uploaded) and, as a [WorkerObserver], of the worker's own events (claim
// failed, recovered, ready, queue call failed, spot notice, stopped).
// Features never send events: they declare what they did in their phase
// results ([Image.Fetch], [PrepareResponse.Caches]) and the runner reports
// it; uploads are seen by the runner's [Publisher]. [Host.Runs] is the
// registry of runs in progress, through which a run is cancelled by its
// task and run ID.
package features
