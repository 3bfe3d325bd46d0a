package docker

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/moby/moby/client"
)

// ContainerLayers is what the worker needs to read a stopped container's
// files without the archive API: its storage driver and, for overlay2, its
// layer directories on the host, plus every path inside the container that
// is not in those layers (volumes, bind mounts, tmpfs, and the files the
// daemon mounts itself).
type ContainerLayers struct {
	// Driver is the storage driver ("overlay2", ...).
	Driver string
	// Layers are the overlay2 layer directories, topmost (the container's
	// own upper directory) first; nil for other drivers.
	Layers []string
	// WorkingDir is the container's working directory ("" for "/").
	WorkingDir string
	// MountPoints are the container paths where something other than the
	// layers is mounted.
	MountPoints []string
}

// InspectLayers returns the layers and mount points of container id.
func (c *Client) InspectLayers(ctx context.Context, id string) (ContainerLayers, error) {
	res, err := c.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return ContainerLayers{}, fmt.Errorf("inspect container %s: %w", id, fault(err))
	}
	in := res.Container
	var out ContainerLayers
	if in.Config != nil {
		out.WorkingDir = in.Config.WorkingDir
	}
	if gd := in.GraphDriver; gd != nil {
		out.Driver = gd.Name
		if gd.Name == "overlay2" && gd.Data["UpperDir"] != "" {
			out.Layers = append(out.Layers, gd.Data["UpperDir"])
			if low := gd.Data["LowerDir"]; low != "" {
				out.Layers = append(out.Layers, strings.Split(low, ":")...)
			}
		}
	}
	for _, m := range in.Mounts {
		out.MountPoints = append(out.MountPoints, m.Destination)
	}
	if hc := in.HostConfig; hc != nil {
		for dst := range hc.Tmpfs {
			out.MountPoints = append(out.MountPoints, dst)
		}
		for _, m := range hc.Mounts {
			out.MountPoints = append(out.MountPoints, m.Target)
		}
		for _, b := range hc.Binds {
			// host:container[:options]
			if parts := strings.Split(b, ":"); len(parts) >= 2 {
				out.MountPoints = append(out.MountPoints, parts[1])
			}
		}
	}
	// What the daemon mounts into every container.
	out.MountPoints = append(out.MountPoints, "/etc/hosts", "/etc/hostname", "/etc/resolv.conf",
		"/proc", "/sys", "/dev")
	for i, p := range out.MountPoints {
		out.MountPoints[i] = filepath.Clean("/" + p)
	}
	return out, nil
}
