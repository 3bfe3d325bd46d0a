package docker_test

import (
	"context"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
	"go.dockerworker.dev/docker-worker/worker/slugid"
)

func TestNetworkLifecycle(t *testing.T) {
	c := dockertest.Require(t)
	ctx := t.Context()
	mark := "test-" + strings.ToLower(slugid.Nice())
	labels := map[string]string{"dev.dockerworker.test": mark}
	name := "dw-test-" + mark
	n, err := c.CreateNetwork(ctx, name, labels)
	if err != nil {
		t.Fatalf("CreateNetwork: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 30*time.Second)
		defer cancel()
		if err := c.RemoveNetwork(ctx, n.ID); err != nil {
			t.Errorf("RemoveNetwork: %v", err)
		}
	})
	if n.Name != name || !n.Subnet.IsValid() || !n.Subnet.Contains(n.Gateway) {
		t.Fatalf("network %+v: want name %s and a gateway inside its subnet", n, name)
	}

	// A container on the network gets an address in its subnet and reaches
	// the gateway by the name given in ExtraHosts.
	out, code := run(t, c, docker.ContainerSpec{
		Cmd:         []string{"sh", "-c", "ip -4 addr show eth0; grep gw /etc/hosts"},
		NetworkMode: n.Name,
		ExtraHosts:  []string{"gw:" + n.Gateway.String()},
	})
	if code != 0 || !regexp.MustCompile(regexp.QuoteMeta(n.Gateway.String())+`\s+gw`).MatchString(out) {
		t.Errorf("exit %d, output %q: want the gateway in /etc/hosts", code, out)
	}
	m := regexp.MustCompile(`inet ([0-9.]+)/`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("output %q: no IPv4 address", out)
	}
	if a, err := netip.ParseAddr(m[1]); err != nil || !n.Subnet.Contains(a) {
		t.Errorf("container address %s, want one in %s", m[1], n.Subnet)
	}

	got, err := c.ListNetworks(ctx, labels)
	if err != nil {
		t.Fatalf("ListNetworks: %v", err)
	}
	if len(got) != 1 || got[0].ID != n.ID || got[0].Gateway != n.Gateway {
		t.Errorf("ListNetworks = %+v, want only %+v", got, n)
	}

	// Removal disconnects a container still attached, and may be repeated.
	create(t, c, docker.ContainerSpec{Cmd: []string{"true"}, NetworkMode: n.Name})
	if err := c.RemoveNetwork(ctx, n.ID); err != nil {
		t.Fatalf("RemoveNetwork with a container attached: %v", err)
	}
	if err := c.RemoveNetwork(ctx, n.ID); err != nil {
		t.Fatalf("RemoveNetwork again: %v", err)
	}
	if got, err := c.ListNetworks(ctx, labels); err != nil || len(got) != 0 {
		t.Errorf("after removal ListNetworks = %+v, %v; want none", got, err)
	}
}
