package docker

import (
	"context"
	"errors"
	"io"
)

// RegistryAuth are the credentials of a private registry.
type RegistryAuth struct{ Username, Password, ServerAddress string }

// Errors of LoadImage.
var (
	ErrNotOneImage          = errors.New("Image tarballs must only contain one image")
	ErrUnknownArchiveFormat = errors.New("Unknown docker archive format")
)

var errPending = errors.New("not implemented yet")

// LoadImage loads a docker save archive, tagging its image ref.
func (c *Client) LoadImage(ctx context.Context, r io.Reader, ref string) (string, error) {
	return "", errPending
}

// TagImage tags image id as ref.
func (c *Client) TagImage(ctx context.Context, id, ref string) error { return errPending }

// ListTags lists the tags of repository.
func (c *Client) ListTags(ctx context.Context, repository string) ([]string, error) {
	return nil, errPending
}
