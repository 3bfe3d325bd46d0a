// Package tc talks to Taskcluster over REST on behalf of the worker.
//
// It signs requests with Hawk (including the temporary, certificate-bearing
// credentials the queue hands out with each claimed run), retries transient
// failures with capped, jittered exponential backoff, and wraps the handful of
// queue endpoints the worker needs: claiming and reclaiming work, resolving
// runs, creating and uploading artifacts, reading tasks and downloading
// artifacts. A [Client] is safe for concurrent use; [Client.WithCredentials]
// derives a client for one run's temporary credentials.
package tc
