package docker

import (
	"context"
	"fmt"
)

// ImageConfig is the part of an image's configuration the worker reads.
type ImageConfig struct {
	ID         string
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	User       string
	// Size is the image's size as Docker reports it (its layers,
	// uncompressed).
	Size int64
}

// InspectImage returns the configuration of a local image (by reference or
// ID).
func (c *Client) InspectImage(ctx context.Context, ref string) (ImageConfig, error) {
	res, err := c.api.ImageInspect(ctx, ref)
	if err != nil {
		return ImageConfig{}, fmt.Errorf("inspect image %q: %w", ref, fault(err))
	}
	out := ImageConfig{ID: res.ID, Size: res.Size}
	if cfg := res.Config; cfg != nil {
		out.Entrypoint = cfg.Entrypoint
		out.Cmd = cfg.Cmd
		out.Env = cfg.Env
		out.WorkingDir = cfg.WorkingDir
		out.User = cfg.User
	}
	return out, nil
}
