package docker

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/moby/moby/client"
)

// ContainersLabelled returns the IDs of the containers, running or not,
// that carry every label in labels with its value. With no labels it
// returns nothing rather than every container.
func (c *Client) ContainersLabelled(ctx context.Context, labels map[string]string) ([]string, error) {
	if len(labels) == 0 {
		return nil, nil
	}
	f := client.Filters{}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		f = f.Add("label", k+"="+labels[k])
	}
	res, err := c.api.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	ids := make([]string, 0, len(res.Items))
	for _, it := range res.Items {
		ids = append(ids, it.ID)
	}
	return ids, nil
}
