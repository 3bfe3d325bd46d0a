// Package artifacts holds the mechanics of turning files taken out of a task
// container into artifact uploads, with no Taskcluster knowledge: content
// types by extension, gzip with docker-worker's compression skip list,
// sha256 of the uncompressed bytes, reading container archives (tar) with
// hostile entry names rejected, spooling entries to private temporary files,
// and a bound on parallel uploads.
//
// It is a leaf package: features/artifacts and other features use it; it
// imports neither worker nor features.
package artifacts
