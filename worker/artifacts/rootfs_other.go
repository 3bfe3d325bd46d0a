//go:build !linux

package artifacts

import (
	"errors"
	"fmt"
	"os"
)

// Root is a stopped container's file system read from its layers; only
// Linux has it (overlayfs, openat2), so elsewhere [OpenLayers] fails and
// artifacts go through the Docker archive API.
type Root struct{}

// OpenLayers fails: reading layers needs Linux.
func OpenLayers(layers []string) (*Root, error) {
	return nil, fmt.Errorf("open layers: %w", errors.ErrUnsupported)
}

// Close does nothing.
func (r *Root) Close() error { return nil }

// Node is a path resolved inside a Root.
type Node struct {
	Kind string
	Size int64
	Real string
}

// File is a regular file found by [Node.Files].
type File struct {
	Rel  string
	Size int64
}

// Lookup fails: there is no Root outside Linux.
func (r *Root) Lookup(p string) (*Node, error) { return nil, errors.ErrUnsupported }

// OpenFile fails: there is no Root outside Linux.
func (r *Root) OpenFile(p string) (*os.File, error) { return nil, errors.ErrUnsupported }

// Close does nothing.
func (n *Node) Close() error { return nil }

// Files fails: there is no Root outside Linux.
func (n *Node) Files() ([]File, error) { return nil, errors.ErrUnsupported }
