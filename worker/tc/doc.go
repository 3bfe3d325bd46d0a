// Package tc talks to Taskcluster over REST on behalf of the worker.
//
// It signs requests with Hawk (including the temporary, certificate-bearing
// credentials the queue hands out with each claimed run), retries transient
// failures with capped, jittered exponential backoff, and wraps the handful
// of queue and object-service endpoints the worker needs: claiming and
// reclaiming work, resolving runs, creating and uploading artifacts (to a
// presigned s3 URL, or through the object service with
// [Client.UploadObjectArtifact]), reading tasks and downloading artifacts.
// A [Client] is safe for concurrent use; [Client.WithCredentials] derives a
// client for one run's temporary credentials.
//
// No call waits forever: each attempt of a JSON call has a time limit
// ([Config.AttemptTimeout]), downloads and uploads are aborted when they
// stop moving bytes ([Config.StallTimeout]), and the default transport
// bounds dialing, the TLS handshake and the wait for response headers; a
// timed-out attempt is retried like a network error and its error wraps
// [ErrTimeout]. Every attempt is signed afresh, and a request that
// net/http resent on its own with an already used Hawk nonce is signed
// again and resent (see [Client.Request]).
package tc
