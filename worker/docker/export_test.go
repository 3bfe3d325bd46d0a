package docker

import (
	"context"
	"io"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// PullsStarted reports how many pulls c has begun.
func PullsStarted(c *Client) int64 { return c.pullsStarted.Load() }

// PullAttempts reports how many pull attempts c has made.
func PullAttempts(c *Client) int64 { return c.pullAttempts.Load() }

// InspectContainer exposes the daemon's view of a container to tests.
func InspectContainer(ctx context.Context, c *Client, id string) (container.InspectResponse, error) {
	res, err := c.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	return res.Container, err
}

// SaveImage returns the daemon's `docker save` archive of the named images.
func SaveImage(ctx context.Context, c *Client, names ...string) ([]byte, error) {
	res, err := c.api.ImageSave(ctx, names)
	if err != nil {
		return nil, err
	}
	defer res.Close()
	return io.ReadAll(res)
}

// RemoveImageID deletes an image by ID with all its tags; a missing image
// is not an error.
func RemoveImageID(ctx context.Context, c *Client, id string) error {
	_, err := c.api.ImageRemove(ctx, id, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	if err != nil && !isNotFound(err) {
		return err
	}
	return nil
}

// ImageID returns the ID of a local image, or an error satisfying
// [IsNotFound] when it is absent.
func ImageID(ctx context.Context, c *Client, ref string) (string, error) {
	return c.imageID(ctx, ref)
}

// IsNotFound reports whether err says the object does not exist.
func IsNotFound(err error) bool { return isNotFound(err) }
