package docker

import (
	"context"
	"fmt"
	"io"

	"github.com/moby/moby/client"
)

// Commit creates an image from container id's filesystem, tagged ref
// ("repo" or "repo:tag"; "latest" when it has no tag), and returns the
// image ID. The container may be stopped.
func (c *Client) Commit(ctx context.Context, id, ref string) (string, error) {
	image, err := normalizeRef(ref)
	if err != nil {
		return "", err
	}
	res, err := c.api.ContainerCommit(ctx, id, client.ContainerCommitOptions{Reference: image})
	if err != nil {
		return "", fmt.Errorf("commit container %s as %s: %w", id, image, fault(err))
	}
	return res.ID, nil
}

// SaveImage streams ref as a `docker save` archive (an uncompressed tar
// that [Client.LoadImage] and `docker load` read). The stream stops when
// ctx is done; the caller must close it.
func (c *Client) SaveImage(ctx context.Context, ref string) (io.ReadCloser, error) {
	image, err := normalizeRef(ref)
	if err != nil {
		return nil, err
	}
	res, err := c.api.ImageSave(ctx, []string{image})
	if err != nil {
		return nil, fmt.Errorf("save image %s: %w", image, fault(err))
	}
	return res, nil
}
