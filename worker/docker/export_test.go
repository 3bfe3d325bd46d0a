package docker

import (
	"context"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// PullsStarted reports how many pulls c has begun.
func PullsStarted(c *Client) int64 { return c.pullsStarted.Load() }

// InspectContainer exposes the daemon's view of a container to tests.
func InspectContainer(ctx context.Context, c *Client, id string) (container.InspectResponse, error) {
	res, err := c.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	return res.Container, err
}
