package docker

import (
	"context"
	"fmt"
	"io"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// ContainerSpec is what the worker decides about a task container.
type ContainerSpec struct {
	Image      string            // reference or ID; should already be present (see [Client.EnsureImage])
	Cmd        []string          // command; the image's default when empty
	Env        []string          // "NAME=value"
	Tty        bool              // allocate a TTY (output is then one raw stream)
	Binds      []string          // "host:container[:options]"
	CapAdd     []string          // capabilities to add, e.g. "SYS_PTRACE"
	Devices    []Device          // host devices to expose
	Privileged bool              // run privileged
	ShmSize    int64             // size of /dev/shm in bytes; 0 means the daemon default
	ExtraHosts []string          // "host:ip" lines added to /etc/hosts
	Labels     map[string]string // container labels

	Entrypoint  []string // replaces the image's entrypoint when set
	Links       []string // "container:alias"
	NetworkMode string   // "" for the daemon default
	SecurityOpt []string // e.g. "seccomp=unconfined"
	CpusetCpus  string   // e.g. "0" or "2-3"
}

// Device maps a host device into a container.
type Device struct {
	PathOnHost        string
	PathInContainer   string
	CgroupPermissions string // e.g. "rwm"
}

// Create creates (but does not start) a container from spec and returns
// its ID. Stdout and stderr are attachable and stdin is closed.
func (c *Client) Create(ctx context.Context, spec ContainerSpec) (string, error) {
	devices := make([]container.DeviceMapping, 0, len(spec.Devices))
	for _, d := range spec.Devices {
		devices = append(devices, container.DeviceMapping{
			PathOnHost:        d.PathOnHost,
			PathInContainer:   d.PathInContainer,
			CgroupPermissions: d.CgroupPermissions,
		})
	}
	hc := &container.HostConfig{
		Binds:       spec.Binds,
		CapAdd:      spec.CapAdd,
		ExtraHosts:  spec.ExtraHosts,
		Privileged:  spec.Privileged,
		ShmSize:     spec.ShmSize,
		Links:       spec.Links,
		NetworkMode: container.NetworkMode(spec.NetworkMode),
		SecurityOpt: spec.SecurityOpt,
		Resources:   container.Resources{Devices: devices, CpusetCpus: spec.CpusetCpus},
	}
	res, err := c.api.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{
			Image:        spec.Image,
			Cmd:          spec.Cmd,
			Entrypoint:   spec.Entrypoint,
			Env:          spec.Env,
			Labels:       spec.Labels,
			Tty:          spec.Tty,
			AttachStdout: true,
			AttachStderr: true,
			OpenStdin:    false,
		},
		HostConfig: hc,
	})
	if err != nil {
		return "", fmt.Errorf("create container from %q: %w", spec.Image, fault(err))
	}
	return res.ID, nil
}

// Attach returns the container's output as one stream: the raw TTY stream
// when the container has a TTY, otherwise stdout and stderr interleaved in
// the order the daemon sends them. Call it before [Client.Start] so that no
// output is lost. The stream ends (io.EOF) when the container's output
// ends; closing it, or ctx being done, ends it early. The caller must
// close it.
func (c *Client) Attach(ctx context.Context, id string) (io.ReadCloser, error) {
	info, err := c.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return nil, fmt.Errorf("attach to container %s: %w", id, fault(err))
	}
	tty := info.Container.Config != nil && info.Container.Config.Tty

	res, err := c.api.ContainerAttach(ctx, id, client.ContainerAttachOptions{
		Stream: true,
		Stdout: true,
		Stderr: true,
	})
	if err != nil {
		return nil, fmt.Errorf("attach to container %s: %w", id, fault(err))
	}
	hr := res.HijackedResponse
	stop := context.AfterFunc(ctx, hr.Close)
	closeConn := func() error {
		stop()
		hr.Close()
		return nil
	}
	if tty {
		return &attachStream{Reader: hr.Reader, close: closeConn}, nil
	}
	pr, pw := io.Pipe()
	go func() {
		_, err := stdcopy.StdCopy(pw, pw, hr.Reader)
		pw.CloseWithError(err) // nil err means io.EOF for the reader
	}()
	return &attachStream{Reader: pr, close: func() error {
		_ = closeConn()
		return pr.Close()
	}}, nil
}

type attachStream struct {
	io.Reader
	close func() error
}

func (s *attachStream) Close() error { return s.close() }

// Start starts a created container. An error means the container did not
// start, for example because its command does not exist.
func (c *Client) Start(ctx context.Context, id string) error {
	if _, err := c.api.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("start container %s: %w", id, fault(err))
	}
	return nil
}

// Wait blocks until the container is not running and returns its exit
// code. If the container is not running when Wait is called it returns at
// once. Cancelling ctx abandons the wait, not the container. A wait the
// daemon cuts off (its connection breaks, the container vanishes) fails
// with a [DaemonError].
func (c *Client) Wait(ctx context.Context, id string) (int, error) {
	res := c.api.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	select {
	case r := <-res.Result:
		if r.Error != nil && r.Error.Message != "" {
			return int(r.StatusCode), fmt.Errorf("wait for container %s: %s", id, r.Error.Message)
		}
		return int(r.StatusCode), nil
	case err := <-res.Error:
		if isNotFound(err) {
			// The worker waits only on containers it created and has
			// not removed: one that is gone went with the daemon.
			err = &DaemonError{What: vanished, Err: err}
		}
		return 0, fmt.Errorf("wait for container %s: %w", id, fault(err))
	case <-ctx.Done():
		return 0, fmt.Errorf("wait for container %s: %w", id, context.Cause(ctx))
	}
}

// Kill sends SIGKILL to the container. A container that is not running or
// does not exist is not an error.
func (c *Client) Kill(ctx context.Context, id string) error {
	_, err := c.api.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: "KILL"})
	switch {
	case err == nil, isNotFound(err):
		return nil
	case cerrdefs.IsConflict(err) && strings.Contains(err.Error(), "is not running"):
		return nil
	}
	return fmt.Errorf("kill container %s: %w", id, fault(err))
}

// Remove force-removes the container (killing it if it runs) together
// with its anonymous volumes. A missing container is not an error, so
// Remove is idempotent.
func (c *Client) Remove(ctx context.Context, id string) error {
	_, err := c.api.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("remove container %s: %w", id, fault(err))
	}
	return nil
}
