package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/internal/backoff"
	"go.dockerworker.dev/docker-worker/worker/taskerr"
)

// Container settings docker-worker applied to every task container.
const (
	shmSize        = 1800000000
	localhostAlias = "localhost.localdomain:127.0.0.1"
)

// mergePrepare adds one feature's contribution to the merged one, refusing
// clashes and malformed entries.
func mergePrepare(into, from *features.PrepareResponse) error {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(from.Env)) {
		v := from.Env[k]
		if old, ok := into.Env[k]; ok && old != v {
			errs = append(errs, fmt.Errorf("two features set env %s", k))
			continue
		}
		if into.Env == nil {
			into.Env = map[string]string{}
		}
		into.Env[k] = v
	}
	for _, m := range from.Mounts {
		switch {
		case m.Source == "":
			errs = append(errs, fmt.Errorf("mount on %q has no source", m.Target))
		case !path.IsAbs(m.Target) || strings.Contains(m.Target, ":"):
			errs = append(errs, fmt.Errorf("mount target %q is not an absolute container path", m.Target))
		case strings.Contains(m.Source, ":"):
			errs = append(errs, fmt.Errorf("mount source %q contains a colon", m.Source))
		case slices.ContainsFunc(into.Mounts, func(h features.Mount) bool { return path.Clean(h.Target) == path.Clean(m.Target) }):
			errs = append(errs, fmt.Errorf("two features mount %s", m.Target))
		default:
			into.Mounts = append(into.Mounts, m)
		}
	}
	for _, d := range from.Devices {
		if d.ContainerPath == "" {
			d.ContainerPath = d.HostPath
		}
		switch {
		case d.HostPath == "" || !path.IsAbs(d.ContainerPath):
			errs = append(errs, fmt.Errorf("device %q -> %q is not a pair of absolute paths", d.HostPath, d.ContainerPath))
		case slices.ContainsFunc(into.Devices, func(h features.Device) bool { return h.ContainerPath == d.ContainerPath }):
			errs = append(errs, fmt.Errorf("two features add device %s", d.ContainerPath))
		default:
			into.Devices = append(into.Devices, d)
		}
	}
	set := func(what string, into *string, v string) {
		if v == "" || *into == v {
			return
		}
		if *into != "" {
			errs = append(errs, fmt.Errorf("two features set the %s (%q and %q)", what, *into, v))
			return
		}
		*into = v
	}
	set("network mode", &into.NetworkMode, from.NetworkMode)
	set("cpuset", &into.CpusetCpus, from.CpusetCpus)
	if len(from.Entrypoint) > 0 {
		if len(into.Entrypoint) > 0 {
			errs = append(errs, errors.New("two features wrap the entrypoint"))
		} else {
			into.Entrypoint, into.WrapImageEntrypoint = from.Entrypoint, from.WrapImageEntrypoint
		}
	}
	into.ExtraHosts = appendNew(into.ExtraHosts, from.ExtraHosts...)
	into.Links = appendNew(into.Links, from.Links...)
	into.SecurityOpt = appendNew(into.SecurityOpt, from.SecurityOpt...)
	into.CapAdd = appendNew(into.CapAdd, from.CapAdd...)
	into.Privileged = into.Privileged || from.Privileged
	into.LogLines = append(into.LogLines, from.LogLines...)
	return errors.Join(errs...)
}

// appendNew appends the values not already in s.
func appendNew(s []string, vs ...string) []string {
	for _, v := range vs {
		if !slices.Contains(s, v) {
			s = append(s, v)
		}
	}
	return s
}

// containerSpec builds the task container from the payload, the image, the
// features' contributions and the worker's reserved environment.
func (r *run) containerSpec(img features.Image, prep *features.PrepareResponse) (docker.ContainerSpec, error) {
	cfg := r.w.cfg
	p := r.payload
	env := maps.Clone(prep.Env)
	if env == nil {
		env = map[string]string{}
	}
	maps.Copy(env, p.Env)
	loc, err := cfg.WorkerLocationJSON()
	if err != nil {
		return docker.ContainerSpec{}, err
	}
	maps.Copy(env, map[string]string{
		"TASK_ID":                     r.taskID,
		"RUN_ID":                      strconv.Itoa(r.runID),
		"TASKCLUSTER_WORKER_TYPE":     cfg.WorkerType,
		"TASKCLUSTER_WORKER_POOL":     cfg.ProvisionerID + "/" + cfg.WorkerType,
		"TASKCLUSTER_INSTANCE_TYPE":   cfg.WorkerNodeType,
		"TASKCLUSTER_WORKER_GROUP":    cfg.WorkerGroup,
		"TASKCLUSTER_PUBLIC_IP":       cfg.PublicIP,
		"TASKCLUSTER_ROOT_URL":        cfg.RootURL,
		"TASKCLUSTER_WORKER_LOCATION": loc,
	})
	keys := slices.Sorted(maps.Keys(env))
	envList := make([]string, len(keys))
	for i, k := range keys {
		envList[i] = k + "=" + env[k]
	}
	binds := make([]string, len(prep.Mounts))
	for i, m := range prep.Mounts {
		binds[i] = m.Source + ":" + m.Target
		if m.ReadOnly {
			binds[i] += ":ro"
		}
	}
	devices := make([]docker.Device, len(prep.Devices))
	for i, d := range prep.Devices {
		perm := d.Permissions
		if perm == "" {
			perm = "rwm"
		}
		devices[i] = docker.Device{PathOnHost: d.HostPath, PathInContainer: d.ContainerPath, CgroupPermissions: perm}
	}
	cmd := p.Command
	var entrypoint []string
	if len(prep.Entrypoint) > 0 {
		entrypoint = slices.Clone(prep.Entrypoint)
		if prep.WrapImageEntrypoint {
			entrypoint = append(entrypoint, img.Config.Entrypoint...)
		}
		if len(cmd) == 0 {
			cmd = img.Config.Cmd
		}
	}
	sort.Strings(prep.ExtraHosts)
	return docker.ContainerSpec{
		Image:       img.ID,
		Cmd:         cmd,
		Entrypoint:  entrypoint,
		Env:         envList,
		Tty:         true,
		Binds:       binds,
		CapAdd:      prep.CapAdd,
		Devices:     devices,
		Privileged:  prep.Privileged,
		ShmSize:     shmSize,
		ExtraHosts:  append([]string{localhostAlias}, prep.ExtraHosts...),
		Links:       prep.Links,
		NetworkMode: prep.NetworkMode,
		SecurityOpt: prep.SecurityOpt,
		CpusetCpus:  prep.CpusetCpus,
		Labels:      r.containerLabels(),
	}, nil
}

// maxRunTime is how long the container may run: the payload's maxRunTime,
// but never past the task's deadline (after which the queue has resolved
// the run). deadline reports which of the two applies.
func (r *run) maxRunTime() (d time.Duration, deadline bool) {
	left := r.def.Deadline.Sub(r.w.now())
	secs := r.payload.MaxRunTime
	if r.def.Deadline.IsZero() {
		left = time.Duration(math.MaxInt64)
	}
	if float64(secs) >= left.Seconds() {
		return max(left, 0), true
	}
	return time.Duration(secs) * time.Second, false
}

// runContainer creates, starts and waits for the task container, enforcing
// maxRunTime and aborts, then calls the Started and Exited phases. The
// container is left stopped (killed on every abort): the run removes it
// after its resolution (see removeContainer).
func (r *run) runContainer(ctx context.Context, spec docker.ContainerSpec, out outcome) outcome {
	d := r.w.opts.Docker
	bg := context.WithoutCancel(ctx)
	r.log.Infof("=== Task Starting ===")
	startErr := func(err error) outcome {
		r.log.Errorf("Failure to properly start execution environment.")
		r.log.Println(err.Error())
		out.err = errors.Join(out.err, err)
		return out
	}
	// The create is not cut short by an abort: the daemon would create
	// the container anyway and the worker would never learn its id to
	// remove it. An abort that came meanwhile is honoured right after.
	cctx, cancelCreate := context.WithTimeout(bg, createTimeout)
	id, err := d.Create(cctx, spec)
	cancelCreate()
	if err != nil {
		return startErr(fmt.Errorf("create container: %w", err))
	}
	// The container is removed once the run is resolved (removeContainer),
	// off the task's critical path.
	r.mu.Lock()
	r.containerID = id
	r.mu.Unlock()
	if ctx.Err() != nil {
		out.err = errors.Join(out.err, context.Cause(ctx))
		return out
	}
	r.mark(features.PhaseCreated)
	stream, err := d.Attach(ctx, id)
	if err != nil {
		return startErr(fmt.Errorf("attach container: %w", err))
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		io.Copy(&firstOutput{w: r.log, r: r}, stream)
	}()
	defer func() {
		stream.Close()
		<-copied
	}()
	if err := d.Start(ctx, id); err != nil {
		return startErr(fmt.Errorf("start container: %w", err))
	}
	r.mark(features.PhaseStarted)

	waited := make(chan waitResult, 1)
	go func() {
		code, err := d.Wait(bg, id)
		waited <- waitResult{code, err}
	}()
	if err := r.eachPhase("started", true, func(f activeFeature) error {
		if s, ok := f.tf.(features.Starter); ok {
			return s.Started(ctx, &features.StartedRequest{ContainerID: id})
		}
		return nil
	}); err != nil {
		r.log.Errorf("Task was aborted because states could not be started successfully. %v", err)
		r.kill(bg, id, waited)
		out.err = errors.Join(out.err, err)
		return out
	}

	limit, byDeadline := r.maxRunTime()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	select {
	case res := <-waited:
		if res.err != nil {
			out.err = errors.Join(out.err, fmt.Errorf("wait for container: %w", res.err))
			return out
		}
		out.exitCode, out.exited = res.code, true
	case <-timer.C:
		if byDeadline {
			r.logger.Info("task deadline passed", "deadline", r.def.Deadline)
			r.log.Errorf("Task deadline passed. Force killing container.")
			r.kill(bg, id, waited)
			out.err = errors.Join(out.err, taskerr.Canceled(errors.New("the task's deadline passed")))
			return out
		}
		r.logger.Info("task max runtime timeout", "maxRunTime", r.payload.MaxRunTime)
		r.log.Errorf("Task timeout after %d seconds. Force killing container.", r.payload.MaxRunTime)
		r.kill(bg, id, waited)
		out.err = errors.Join(out.err, errMaxRunTime)
		return out
	case <-ctx.Done():
		r.logger.Info("cancelling task", "cause", context.Cause(ctx))
		r.kill(bg, id, waited)
		return out
	}
	// The output stream ends shortly after the container exits.
	grace := time.NewTimer(10 * time.Second)
	select {
	case <-copied:
	case <-grace.C:
		r.logger.Warn("container output did not end after exit")
	}
	grace.Stop()
	// Exited once the output is all in the log, so observers see the
	// first output before the exit.
	r.mark(features.PhaseExited)
	r.log.Infof("=== Task Finished ===")
	if err := r.eachPhase("exited", false, func(f activeFeature) error {
		if e, ok := f.tf.(features.Exiter); ok {
			return e.Exited(ctx, &features.ExitedRequest{ContainerID: id, ExitCode: out.exitCode,
				Container: containerFiles{d: d, id: id}})
		}
		return nil
	}); err != nil {
		out.err = errors.Join(out.err, err)
		if out.exitCode == 0 {
			out.exitCode = -1
		}
	}
	r.mark(features.PhaseArtifacts)
	return out
}

// removeContainer removes the run's task container, if it has one. The
// runner calls it once the run is resolved, so that the removal is not
// part of the time to the resolution; a removal that fails (or a process
// that dies first) leaves a container carrying the worker's labels, which
// the start-up recovery, the Docker health sweep and the disk collector
// find and remove.
func (r *run) removeContainer(ctx context.Context) {
	r.mu.Lock()
	id := r.containerID
	r.containerID = ""
	r.mu.Unlock()
	if id == "" {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, removeTimeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		err := r.w.opts.Docker.Remove(rctx, id)
		if err == nil {
			r.note(phaseRemoved)
			return
		}
		if attempt == removeAttempts || rctx.Err() != nil {
			r.logger.Warn("container removal error", "container", id, "attempts", attempt, "error", err)
			return
		}
		backoff.Wait(rctx, time.Duration(attempt)*removeRetryDelay)
	}
}

type waitResult struct {
	code int
	err  error
}

// kill SIGKILLs the container and waits (boundedly) for it to stop.
func (r *run) kill(ctx context.Context, id string, waited <-chan waitResult) {
	kctx, cancel := context.WithTimeout(ctx, killTimeout)
	defer cancel()
	if err := r.w.opts.Docker.Kill(kctx, id); err != nil {
		r.logger.Warn("kill container", "container", id, "error", err)
	}
	select {
	case <-waited:
	case <-kctx.Done():
		r.logger.Warn("container did not stop after SIGKILL", "container", id)
	}
}

// firstOutput passes the container's output to the task log and tells the
// observers when the first byte arrives.
type firstOutput struct {
	w    io.Writer
	r    *run
	once sync.Once
}

func (f *firstOutput) Write(p []byte) (int, error) {
	if len(p) > 0 {
		f.once.Do(func() {
			f.r.w.hooks.emit(features.Event{Kind: features.FirstOutput, Run: f.r.ref(), At: f.r.w.now()})
		})
	}
	return f.w.Write(p)
}

// containerFiles reads from the stopped task container (features.ContainerFiles).
type containerFiles struct {
	d  Docker
	id string
}

func (c containerFiles) CopyFrom(ctx context.Context, path string) (io.ReadCloser, bool, error) {
	return c.d.CopyFrom(ctx, c.id, path)
}

// containerLabels label the task container with its run and its worker.
func (r *run) containerLabels() map[string]string {
	l := r.w.ownLabels()
	l[labelTaskID] = r.taskID
	l[labelRunID] = strconv.Itoa(r.runID)
	return l
}
