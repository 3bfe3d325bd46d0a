package docker

import (
	"context"
	"fmt"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// ContainerState is what the worker knows of an existing container.
type ContainerState struct {
	ID      string
	ImageID string
	// State is Docker's: "created", "running", "exited", "dead", ...
	State  string
	Labels map[string]string
	// Created is when the container was created; FinishedAt when it last
	// stopped (zero unless it has stopped).
	Created    time.Time
	FinishedAt time.Time
}

// Running reports whether the container runs (or is paused or restarting).
func (s ContainerState) Running() bool {
	switch container.ContainerState(s.State) {
	case container.StateRunning, container.StatePaused, container.StateRestarting:
		return true
	}
	return false
}

// ListContainers lists every container (stopped ones included) carrying all
// of labels (any container when labels is empty). FinishedAt is filled for
// stopped containers.
func (c *Client) ListContainers(ctx context.Context, labels map[string]string) ([]ContainerState, error) {
	f := client.Filters{}
	for k, v := range labels {
		f = f.Add("label", k+"="+v)
	}
	res, err := c.api.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", fault(err))
	}
	out := make([]ContainerState, 0, len(res.Items))
	for _, s := range res.Items {
		cs := ContainerState{ID: s.ID, ImageID: s.ImageID, State: string(s.State), Labels: s.Labels,
			Created: time.Unix(s.Created, 0)}
		if !cs.Running() && cs.State != string(container.StateCreated) {
			in, err := c.api.ContainerInspect(ctx, s.ID, client.ContainerInspectOptions{})
			switch {
			case isNotFound(err):
				continue // removed meanwhile
			case err != nil:
				return nil, fmt.Errorf("inspect container %s: %w", s.ID, fault(err))
			}
			if st := in.Container.State; st != nil {
				cs.FinishedAt, _ = time.Parse(time.RFC3339Nano, st.FinishedAt)
			}
		}
		out = append(out, cs)
	}
	return out, nil
}

// ImagesInUse returns the IDs of the images any container (running or
// not) was created from.
func (c *Client) ImagesInUse(ctx context.Context) (map[string]bool, error) {
	cs, err := c.api.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", fault(err))
	}
	used := map[string]bool{}
	for _, s := range cs.Items {
		used[s.ImageID] = true
	}
	return used, nil
}

// DataRoot is the daemon's data directory (`docker info`'s Docker Root
// Dir), where images, containers and volumes take their space.
func (c *Client) DataRoot(ctx context.Context) (string, error) {
	res, err := c.api.Info(ctx, client.InfoOptions{})
	if err != nil {
		return "", fmt.Errorf("docker info: %w", fault(err))
	}
	return res.Info.DockerRootDir, nil
}

// LocalImage is a local image as listed.
type LocalImage struct {
	ID      string
	Tags    []string
	Created time.Time
}

// ImagesMatching lists the local images with a reference matching pattern
// (Docker's `reference` filter, e.g. "docker-worker/task-image/*").
func (c *Client) ImagesMatching(ctx context.Context, pattern string) ([]LocalImage, error) {
	res, err := c.api.ImageList(ctx, client.ImageListOptions{Filters: client.Filters{}.Add("reference", pattern)})
	if err != nil {
		return nil, fmt.Errorf("list images %s: %w", pattern, fault(err))
	}
	out := make([]LocalImage, 0, len(res.Items))
	for _, s := range res.Items {
		out = append(out, LocalImage{ID: s.ID, Tags: s.RepoTags, Created: time.Unix(s.Created, 0)})
	}
	return out, nil
}
