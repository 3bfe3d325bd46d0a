// Package hawkserver is the server side of Taskcluster request
// authentication, for the embedded queue (worker/localqueue) only: it
// parses Hawk Authorization headers and their Taskcluster ext, computes
// payload hashes, signs and verifies bewits (Hawk's signed URLs), and
// issues and verifies the certificates of temporary credentials. Policy (which clients exist, their scopes, nonce replay,
// clock skew) stays with the queue.
//
// Clients sign requests with worker/tc ([tc.SignRequest]); the MAC both
// sides compute is [tc.HawkArtifacts.MAC], so signing and verification
// cannot drift apart.
package hawkserver
