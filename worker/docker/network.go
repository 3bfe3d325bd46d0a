package docker

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// Network is a user-defined bridge network as the worker knows it.
type Network struct {
	ID     string
	Name   string
	Labels map[string]string
	// Subnet is the network's IPv4 subnet and Gateway the host's address
	// on it (the bridge interface's address).
	Subnet  netip.Prefix
	Gateway netip.Addr
}

// CreateNetwork creates a bridge network called name carrying labels, with
// an IPv4 subnet chosen by the daemon from its address pools, and returns it
// with its subnet and gateway. A network that cannot be inspected after
// creation is removed again.
func (c *Client) CreateNetwork(ctx context.Context, name string, labels map[string]string) (Network, error) {
	res, err := c.api.NetworkCreate(ctx, name, client.NetworkCreateOptions{
		Driver: "bridge",
		Labels: labels,
	})
	if err != nil {
		return Network{}, fmt.Errorf("create network %s: %w", name, fault(err))
	}
	n, err := c.InspectNetwork(ctx, res.ID)
	if err != nil {
		return Network{}, errors.Join(err, c.RemoveNetwork(context.WithoutCancel(ctx), res.ID))
	}
	return n, nil
}

// InspectNetwork returns the network with that ID or name.
func (c *Client) InspectNetwork(ctx context.Context, id string) (Network, error) {
	res, err := c.api.NetworkInspect(ctx, id, client.NetworkInspectOptions{})
	if err != nil {
		return Network{}, fmt.Errorf("inspect network %s: %w", id, fault(err))
	}
	n := toNetwork(res.Network.Network)
	if !n.Subnet.IsValid() || !n.Gateway.IsValid() {
		return Network{}, fmt.Errorf("inspect network %s: no IPv4 subnet and gateway", id)
	}
	return n, nil
}

// toNetwork picks the first IPv4 subnet of the network's IPAM
// configuration; a missing gateway is the subnet's first address, as the
// bridge driver assigns it.
func toNetwork(in network.Network) Network {
	n := Network{ID: in.ID, Name: in.Name, Labels: in.Labels}
	for _, cfg := range in.IPAM.Config {
		if !cfg.Subnet.IsValid() || !cfg.Subnet.Addr().Is4() {
			continue
		}
		n.Subnet = cfg.Subnet.Masked()
		n.Gateway = cfg.Gateway
		if !n.Gateway.IsValid() {
			n.Gateway = n.Subnet.Addr().Next()
		}
		break
	}
	return n
}

// ListNetworks lists the networks carrying all of labels (every network
// when labels is empty).
func (c *Client) ListNetworks(ctx context.Context, labels map[string]string) ([]Network, error) {
	f := client.Filters{}
	for k, v := range labels {
		f = f.Add("label", k+"="+v)
	}
	res, err := c.api.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list networks: %w", fault(err))
	}
	out := make([]Network, 0, len(res.Items))
	for _, s := range res.Items {
		out = append(out, toNetwork(s.Network))
	}
	return out, nil
}

// RemoveNetwork removes a network, first disconnecting (forcibly) any
// container still attached to it. A network that does not exist is not an
// error, so removal may be repeated.
func (c *Client) RemoveNetwork(ctx context.Context, id string) error {
	in, err := c.api.NetworkInspect(ctx, id, client.NetworkInspectOptions{})
	switch {
	case isNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("inspect network %s: %w", id, fault(err))
	}
	var errs []error
	for cid := range in.Network.Containers {
		_, err := c.api.NetworkDisconnect(ctx, id, client.NetworkDisconnectOptions{Container: cid, Force: true})
		if err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("disconnect container %s from network %s: %w", cid, id, err))
		}
	}
	if _, err := c.api.NetworkRemove(ctx, id, client.NetworkRemoveOptions{}); err != nil && !isNotFound(err) {
		errs = append(errs, fmt.Errorf("remove network %s: %w", id, err))
	}
	return errors.Join(errs...)
}
