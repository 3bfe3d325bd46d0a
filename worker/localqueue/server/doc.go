// Package server runs the embedded queue (package localqueue) as a
// service, as `docker-worker queue` and `docker-worker dev` do: it loads
// and validates the queue's configuration file ([LoadConfig]), wires in
// the configured storage (files, or an S3 bucket with package s3blob) and
// Pulse publisher (package pulse), keeps the queue's state in a bbolt file
// and a generated admin client in the data directory, and serves the queue
// in the background ([Start]).
//
// It exists apart from localqueue because s3blob and pulse build on
// localqueue's interfaces. The command line only maps its flags onto
// [Config] and [Options].
package server
