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
package tc
