package docker

import (
	"context"
	"fmt"
	"io"
	"io/fs"

	"github.com/moby/moby/client"
)

// CopyFrom returns a tar stream of path inside container id (a file or a
// directory; relative paths resolve against the container's working
// directory, as the archive API does) and whether path is a directory. A
// path that does not exist gives an error satisfying
// errors.Is(err, fs.ErrNotExist) that carries the daemon's message. The
// caller must close the stream.
func (c *Client) CopyFrom(ctx context.Context, id, path string) (io.ReadCloser, bool, error) {
	res, err := c.api.CopyFromContainer(ctx, id, client.CopyFromContainerOptions{SourcePath: path})
	if err != nil {
		if isNotFound(err) {
			return nil, false, fmt.Errorf("%w: %v", fs.ErrNotExist, err)
		}
		return nil, false, fmt.Errorf("copy %s from container %s: %w", path, id, fault(err))
	}
	return res.Content, res.Stat.Mode.IsDir(), nil
}
