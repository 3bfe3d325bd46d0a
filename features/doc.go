// Package features is the contract between the task runner and the features
// that plug into it: payload features (artifacts, localLiveLog, ...), worker
// capabilities, and the always-on built-ins such as the task log.
//
// # Lifecycle
//
// A [Feature] is built once per worker process, in cmd/, and listed
// explicitly. For every claimed task the runner decides which features take
// part (always-on features; payload features the payload enables, explicitly
// or by default, that the worker has enabled) and calls [Feature.NewTask] on
// each, in list order. NewTask has no side effects; everything that touches
// the world happens in the phases below.
//
// A [TaskFeature] implements any of the optional phase interfaces; the runner
// finds them by type assertion and calls them in list order:
//
//   - [Opener]: first, before the payload is validated, so the task log has
//     its sinks from the first line (a malformed payload still gets a log).
//     Only always-on features are opened before validation; payload features
//     are opened right after it, and their sinks first receive what the log
//     already holds (the header), so every sink sees the whole log.
//   - [Preparer]: before the container is created. Features declare what
//     they contribute (env, binds, devices, capabilities) in the response;
//     the runner merges and applies it. Features never change runner state.
//   - [Starter]: after the container started.
//   - [Exiter]: after the container exited on its own (not after an abort,
//     cancellation or maxRunTime kill): upload payload artifacts and the like.
//   - [Finisher]: after the footer is written and the task log is complete,
//     on every path that resolves the run (including malformed payloads and
//     aborts), but not when the queue cancelled the run: upload logs.
//   - [Cleaner]: always, for every feature whose NewTask succeeded, in
//     reverse order, even after a failed phase. Cleanup must be idempotent.
//
// # Contexts
//
// Phase contexts are the task context: it is cancelled when the task is
// aborted (the queue cancelled the run, a reclaim failed, or the worker shuts
// down immediately); [context.Cause] tells why. A graceful worker shutdown
// does not cancel task contexts. Finish and Cleanup get a context that is not
// cancelled by an abort (so logs still upload) but has its own deadline.
//
// # Errors
//
// A phase returns an error wrapped with a resolution from worker/taskerr
// (taskerr.MalformedPayload, taskerr.ResourceUnavailable, ...); plain errors
// resolve the run as failed. The runner joins the errors of all features and
// classifies them once.
package features
