// Package e2e holds the end-to-end tests: a worker against the embedded
// queue over real HTTP and a real dockerd, porting the behaviours of
// docker-worker's integration tests. They fail (not skip) without a Docker
// daemon when CI is set; run test/setup-env.sh first.
package e2e
