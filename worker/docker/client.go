// Package docker is the worker's narrow, concrete wrapper over the Docker
// Engine API: it makes sure task images are present (pulling them, with
// registry credentials when given, retries, stall detection and one shared
// pull per reference and credentials), loads `docker save` archives under a
// tag of the caller's choosing, tags and lists local images, and runs task
// containers through create, attach, start, wait, kill and remove.
//
// A call that the daemon cuts off rather than answers (it cannot be
// reached, or a connection or stream to it breaks) fails with a
// [DaemonError] under the call's usual message, so that the worker can
// tell a daemon that went away from an error of the task.
//
// It is used by the worker core and its features; nothing here knows about
// Taskcluster. A [Client] is safe for concurrent use.
package docker

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"go.dockerworker.dev/docker-worker/worker/flight"
)

// Client talks to one Docker daemon. Create it with [New] and release it
// with [Client.Close].
type Client struct {
	api *client.Client

	pulls flight.Group[pullKey, string] // in-flight pulls by normalised reference and credentials

	pullsStarted atomic.Int64 // pulls begun, for tests
	pullAttempts atomic.Int64 // pull attempts made (a pull makes one or more), for tests
}

// New connects to the daemon named by the standard Docker environment
// variables (DOCKER_HOST and friends; the local socket by default),
// negotiates the API version and pings the daemon. It fails if the daemon
// does not answer before ctx is done.
func New(ctx context.Context) (*Client, error) {
	return connect(ctx, client.FromEnv)
}

// NewHost is [New] for the daemon at host ("unix:///path/to/docker.sock",
// "tcp://127.0.0.1:2375"), whatever the environment says.
func NewHost(ctx context.Context, host string) (*Client, error) {
	return connect(ctx, client.WithHost(host))
}

func connect(ctx context.Context, opt client.Opt) (*Client, error) {
	api, err := client.New(opt)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	if _, err := api.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		return nil, errors.Join(fmt.Errorf("ping docker daemon at %s: %w", api.DaemonHost(), fault(err)), api.Close())
	}
	return &Client{api: api}, nil
}

// Close releases the client's connections. Streams returned by
// [Client.Attach] should be closed first.
func (c *Client) Close() error {
	return c.api.Close()
}

// Ping checks that the daemon answers.
func (c *Client) Ping(ctx context.Context) error {
	if _, err := c.api.Ping(ctx, client.PingOptions{}); err != nil {
		return fmt.Errorf("ping docker daemon: %w", fault(err))
	}
	return nil
}

// isNotFound reports whether err says the object does not exist.
func isNotFound(err error) bool {
	return cerrdefs.IsNotFound(err)
}
