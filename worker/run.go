package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/schemas"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/scopes"
	"go.dockerworker.dev/docker-worker/worker/taskerr"
	"go.dockerworker.dev/docker-worker/worker/tasklog"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// Container settings docker-worker applied to every task container.
const (
	shmSize        = 1800000000
	localhostAlias = "localhost.localdomain:127.0.0.1"
	// finishTimeout bounds log uploads and cleanup after an abort.
	finishTimeout = 5 * time.Minute
)

var errMaxRunTime = errors.New("maxRunTime exceeded")

// run is one claimed task run, from claim to resolution.
type run struct {
	w       *Worker
	taskID  string
	runID   int
	def     tc.TaskDefinition
	logger  *slog.Logger
	log     *tasklog.Log
	payload *schemas.Payload
	start   time.Time

	mu         sync.Mutex
	creds      tc.Credentials
	takenUntil time.Time

	active []activeFeature

	imageID string
	hashes  map[string]string // uploaded artifact sha256s, by name

	// marks are when each phase of the run ended, for the timings record.
	marks []mark
}

// mark is the end of one phase of a run.
type mark struct {
	phase string
	at    time.Time
}

// mark records that phase ended now.
func (r *run) mark(phase string) {
	now := r.w.now()
	r.mu.Lock()
	r.marks = append(r.marks, mark{phase, now})
	r.mu.Unlock()
}

// timings returns slog attributes with each phase's duration in
// milliseconds (since the previous mark; the first since the claim), in
// order, and the total.
func (r *run) timings() []any {
	r.mu.Lock()
	defer r.mu.Unlock()
	attrs := make([]any, 0, 2*len(r.marks)+2)
	prev := r.start
	for _, m := range r.marks {
		attrs = append(attrs, m.phase+"Ms", m.at.Sub(prev).Seconds()*1000)
		prev = m.at
	}
	return append(attrs, "totalMs", prev.Sub(r.start).Seconds()*1000)
}

type activeFeature struct {
	name string
	tf   features.TaskFeature
}

// outcome is how the container part of a run ended.
type outcome struct {
	exitCode int   // -1 unless the container exited by itself
	exited   bool  // the container ran and exited by itself
	err      error // every error, classified once by the caller
}

func newRun(w *Worker, claim tc.TaskClaim) *run {
	return &run{
		w:          w,
		taskID:     claim.Status.TaskID,
		runID:      claim.RunID,
		def:        claim.Task,
		logger:     w.log.With("taskId", claim.Status.TaskID, "runId", claim.RunID),
		log:        tasklog.New(w.now),
		creds:      claim.Credentials,
		takenUntil: claim.TakenUntil,
		start:      w.now(),
	}
}

// queue is a client with the run's current credentials.
func (r *run) queue() RunQueue {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.w.opts.RunQueue(r.creds)
}

func (r *run) run() {
	ctx, cancel := context.WithCancelCause(r.w.abortCtx)
	defer cancel(nil)
	r.logger.Info("run task")

	stopReclaim := make(chan struct{})
	reclaimDone := make(chan struct{})
	go func() {
		defer close(reclaimDone)
		r.reclaimLoop(ctx, cancel, stopReclaim)
	}()
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		if d := r.w.cfg.StatusPollInterval(); d > 0 {
			r.watchStatus(ctx, cancel, stopReclaim, d)
		}
	}()

	out := r.execute(ctx)
	if cause := context.Cause(ctx); ctx.Err() != nil && cause != nil {
		out.err = errors.Join(out.err, cause)
	}
	kind := taskerr.Classify(out.err)
	success := out.err == nil && out.exited && out.exitCode == 0

	switch kind {
	case taskerr.WorkerShutdownKind, taskerr.InternalErrorKind, taskerr.ResourceUnavailableKind:
		r.log.Errorf("Task has been aborted prematurely. Reason: %s", kind.Reason())
	case taskerr.CanceledKind:
		r.log.Errorf("Task was canceled by the queue. %v", out.err)
	}
	r.footer(success, out.exitCode)

	// Finish and Cleanup must run even when the task context is gone.
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer fcancel()
	if kind != taskerr.CanceledKind {
		req := &features.FinishRequest{Success: success, Aborted: !out.exited}
		if err := r.eachPhase(func(f activeFeature) error {
			if p, ok := f.tf.(features.Finisher); ok {
				return p.Finish(fctx, req)
			}
			return nil
		}); err != nil {
			r.logger.Error("finishing task", "error", err)
			out.err = errors.Join(out.err, err)
			success = false
		}
	}
	r.log.Close()
	r.mark("logUploaded")
	r.cleanup(fctx)

	close(stopReclaim)
	<-reclaimDone
	<-watchDone
	r.resolve(fctx, out, kind, success)
}

// eachPhase calls fn for every active feature in order and joins the errors.
func (r *run) eachPhase(fn func(activeFeature) error) error {
	var errs []error
	for _, f := range r.active {
		if err := fn(f); err != nil {
			errs = append(errs, fmt.Errorf("feature %s: %w", f.name, err))
		}
	}
	return errors.Join(errs...)
}

func (r *run) cleanup(ctx context.Context) {
	for _, f := range slices.Backward(r.active) {
		if c, ok := f.tf.(features.Cleaner); ok {
			if err := c.Cleanup(ctx); err != nil {
				r.logger.Warn("feature cleanup failed", "feature", f.name, "error", err)
			}
		}
	}
}

func (r *run) resolve(ctx context.Context, out outcome, kind taskerr.Kind, success bool) {
	q := r.queue()
	var err error
	var state string
	switch {
	case kind == taskerr.CanceledKind:
		r.logger.Info("task resolved", "taskState", "canceled")
		return
	case success:
		state = "completed"
		_, err = q.ReportCompleted(ctx, r.taskID, r.runID)
	case kind != taskerr.Failed:
		state = "exception/" + kind.Reason()
		_, err = q.ReportException(ctx, r.taskID, r.runID, kind.Reason())
	case out.exited && r.payload != nil && r.payload.OnExitStatus != nil && slices.Contains(r.payload.OnExitStatus.Retry, out.exitCode):
		state = "exception/" + tc.ReasonIntermittentTask
		_, err = q.ReportException(ctx, r.taskID, r.runID, tc.ReasonIntermittentTask)
	default:
		state = "failed"
		_, err = q.ReportFailed(ctx, r.taskID, r.runID)
	}
	if err != nil {
		r.logger.Error("could not resolve task", "taskState", state, "error", err)
		return
	}
	r.mark("resolved")
	r.logger.Info("task resolved", "taskState", state)
	r.logger.Info("task timings", r.timings()...)
}

// execute runs everything up to and including the Exited phase.
func (r *run) execute(ctx context.Context) outcome {
	out := outcome{exitCode: -1}
	fail := func(err error) outcome { out.err = errors.Join(out.err, err); return out }

	// Always-on features first: the task log needs its sinks before the header.
	for _, f := range r.w.opts.Features {
		if a, ok := f.(features.AlwaysOn); ok && a.AlwaysOn() {
			if err := r.activate(ctx, f, nil); err != nil {
				return fail(taskerr.InternalError(err))
			}
		}
	}
	// Payload features are opened after validation; what the log holds by
	// then (the header) is replayed into their sinks, so that every sink
	// receives the whole log.
	early := &logPrefix{}
	r.log.AddSink(early)
	defer early.stop()
	r.header()
	if ctx.Err() != nil {
		return out
	}

	if err := r.validate(); err != nil {
		return fail(err)
	}
	for _, f := range r.w.opts.Features {
		if a, ok := f.(features.AlwaysOn); ok && a.AlwaysOn() {
			continue
		}
		if r.featureOn(f) {
			if err := r.activate(ctx, f, early.bytes()); err != nil {
				r.log.Errorf("Task was aborted because states could not be created successfully. %v", err)
				return fail(err)
			}
		}
	}
	early.stop()

	var prep features.PrepareResponse
	if err := r.eachPhase(func(f activeFeature) error {
		p, ok := f.tf.(features.Preparer)
		if !ok {
			return nil
		}
		var resp features.PrepareResponse
		if err := p.Prepare(ctx, &features.PrepareRequest{}, &resp); err != nil {
			return err
		}
		return mergePrepare(&prep, &resp)
	}); err != nil {
		r.log.Errorf("Task was aborted because states could not be created successfully. %v", err)
		return fail(err)
	}
	if ctx.Err() != nil {
		return out
	}

	spec, err := r.containerSpec(&prep)
	if err != nil {
		r.log.Errorf("Docker configuration could not be created.  This may indicate an authentication error when validating scopes necessary for running the task. \n %v", err)
		return fail(err)
	}
	image, err := r.w.opts.Docker.EnsureImage(ctx, r.payload.Image.Name, r.log, r.w.pullPolicy())
	if err != nil {
		if ctx.Err() != nil {
			return out
		}
		r.log.Errorf("Pulling docker image has failed.")
		r.log.Errorf("Error: %v", err)
		return fail(fmt.Errorf("pull image %q: %w", r.payload.Image.Name, err))
	}
	spec.Image = image
	r.mark("image")
	r.mu.Lock()
	r.imageID = image
	r.mu.Unlock()
	return r.runContainer(ctx, spec, out)
}

// runContainer creates, starts and waits for the task container, enforcing
// maxRunTime and aborts, then calls the Started and Exited phases.
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
	id, err := d.Create(ctx, spec)
	if err != nil {
		return startErr(fmt.Errorf("create container: %w", err))
	}
	r.mark("created")
	defer func() {
		if err := d.Remove(bg, id); err != nil {
			r.logger.Warn("container removal error", "container", id, "error", err)
		}
	}()
	stream, err := d.Attach(ctx, id)
	if err != nil {
		return startErr(fmt.Errorf("attach container: %w", err))
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		io.Copy(r.log, stream)
	}()
	defer func() {
		stream.Close()
		<-copied
	}()
	if err := d.Start(ctx, id); err != nil {
		return startErr(fmt.Errorf("start container: %w", err))
	}
	r.mark("started")
	if err := r.eachPhase(func(f activeFeature) error {
		if s, ok := f.tf.(features.Starter); ok {
			return s.Started(ctx, &features.StartedRequest{ContainerID: id})
		}
		return nil
	}); err != nil {
		r.log.Errorf("Task was aborted because states could not be started successfully. %v", err)
		d.Kill(bg, id)
		out.err = errors.Join(out.err, err)
		return out
	}

	waited := make(chan waitResult, 1)
	go func() {
		code, err := d.Wait(bg, id)
		waited <- waitResult{code, err}
	}()
	maxRun := time.Duration(r.payload.MaxRunTime) * time.Second
	timer := time.NewTimer(maxRun)
	defer timer.Stop()
	select {
	case res := <-waited:
		if res.err != nil {
			out.err = errors.Join(out.err, fmt.Errorf("wait for container: %w", res.err))
			return out
		}
		out.exitCode, out.exited = res.code, true
		r.mark("exited")
	case <-timer.C:
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
	select {
	case <-copied:
	case <-time.After(10 * time.Second):
		r.logger.Warn("container output did not end after exit")
	}
	r.log.Infof("=== Task Finished ===")
	if err := r.eachPhase(func(f activeFeature) error {
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
	r.mark("artifacts")
	return out
}

type waitResult struct {
	code int
	err  error
}

// kill SIGKILLs the container and waits for it to stop.
func (r *run) kill(ctx context.Context, id string, waited <-chan waitResult) {
	if err := r.w.opts.Docker.Kill(ctx, id); err != nil {
		r.logger.Warn("kill container", "container", id, "error", err)
	}
	select {
	case <-waited:
	case <-time.After(30 * time.Second):
		r.logger.Warn("container did not stop after SIGKILL", "container", id)
	}
}

// activate creates a feature's per-task part and opens it; its log sinks
// first receive replay, what the log held before they were added.
func (r *run) activate(ctx context.Context, f features.Feature, replay []byte) error {
	tf, err := f.NewTask(&taskView{r: r, logger: r.logger.With("feature", f.Name())})
	if err != nil {
		return fmt.Errorf("feature %s: %w", f.Name(), err)
	}
	af := activeFeature{name: f.Name(), tf: tf}
	r.active = append(r.active, af)
	if o, ok := tf.(features.Opener); ok {
		var resp features.OpenResponse
		if err := o.Open(ctx, &features.OpenRequest{}, &resp); err != nil {
			return fmt.Errorf("feature %s: %w", f.Name(), err)
		}
		for _, s := range resp.LogSinks {
			if len(replay) > 0 {
				if _, err := s.Write(replay); err != nil {
					return fmt.Errorf("feature %s: task log sink: %w", f.Name(), err)
				}
			}
			r.log.AddSink(s)
		}
	}
	return nil
}

// logPrefix records the start of the task log (until stop), for sinks
// added late. Only the runner's goroutine writes to the log while payload
// features are opened, so the replay cannot miss or repeat a write.
type logPrefix struct {
	mu      sync.Mutex
	buf     []byte
	stopped bool
}

func (p *logPrefix) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.stopped {
		p.buf = append(p.buf, b...)
	}
	return len(b), nil
}

func (p *logPrefix) bytes() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.buf)
}

// stop drops the recording; later writes are discarded.
func (p *logPrefix) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped, p.buf = true, nil
}

func (r *run) header() {
	cfg := r.w.cfg
	for _, line := range []string{
		"Task ID: " + r.taskID,
		"Worker ID: " + cfg.WorkerID,
		"Worker Group: " + cfg.WorkerGroup,
		"Worker Node Type: " + cfg.WorkerNodeType,
		"Worker Pool: " + cfg.ProvisionerID + "/" + cfg.WorkerType,
		"Worker Version: " + r.w.opts.Version,
		"Public IP: " + cfg.PublicIP,
		"Hostname: " + r.w.opts.Hostname,
	} {
		r.log.Infof("%s", line)
	}
	io.WriteString(r.log, "\r\n")
}

func (r *run) footer(success bool, exitCode int) {
	secs := r.w.now().Sub(r.start).Seconds()
	word := "Successful"
	if !success {
		word = "Unsuccessful"
	}
	r.log.Infof("%s task run with exit code: %d completed in %s seconds", word, exitCode,
		strconv.FormatFloat(secs, 'f', 3, 64))
}

// validate checks the payload and everything this worker must refuse before
// running it; every problem is written to the task log.
func (r *run) validate() error {
	p, problems := r.w.opts.Validator.Validate(r.def.Payload)
	if p != nil {
		problems = append(problems, schemas.CheckArtifactExpiry(p, r.def.Expires)...)
		problems = append(problems, r.unsupported(p)...)
	}
	if len(problems) > 0 {
		lines := make([]string, len(problems))
		for i, pr := range problems {
			lines[i] = pr.String()
		}
		r.log.Errorf("`task.payload` format is invalid json schema errors:\n %s", strings.Join(lines, "\n "))
		return taskerr.MalformedPayload(fmt.Errorf("payload is invalid: %s", strings.Join(lines, "; ")))
	}
	r.payload = p
	return nil
}

// unsupported lists what the payload asks for that this worker cannot give:
// features it does not have or has disabled, and payload parts not built yet.
func (r *run) unsupported(p *schemas.Payload) []schemas.Problem {
	var out []schemas.Problem
	have := map[string]features.Feature{}
	for _, f := range r.w.opts.Features {
		have[f.Name()] = f
	}
	names := make([]string, 0, len(p.Features))
	for name := range p.Features {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if !p.Features[name] || !explicit(p, name) {
			continue
		}
		if !r.w.cfg.FeatureEnabled(name, workerDefault(name)) {
			out = append(out, schemas.Problem{Path: "payload.features." + name,
				Message: fmt.Sprintf("feature %q is not enabled on this worker (%s/%s)", name, r.w.cfg.ProvisionerID, r.w.cfg.WorkerType)})
		} else if _, ok := have[name]; !ok {
			out = append(out, schemas.Problem{Path: "payload.features." + name,
				Message: fmt.Sprintf("feature %q is not supported by this worker", name)})
		}
	}
	if p.Image.Type != schemas.ImageTypeDockerImage {
		out = append(out, schemas.Problem{Path: "payload.image",
			Message: fmt.Sprintf("image type %q is not supported by this worker yet", p.Image.Type)})
	}
	if len(p.Cache) > 0 {
		out = append(out, schemas.Problem{Path: "payload.cache", Message: "volume caches are not supported by this worker yet"})
	}
	if p.Capabilities != nil && len(p.Capabilities.Devices) > 0 {
		out = append(out, schemas.Problem{Path: "payload.capabilities.devices", Message: "devices are not supported by this worker yet"})
	}
	return out
}

// explicit reports whether the payload itself set features.<name> (rather
// than the schema default).
func explicit(p *schemas.Payload, name string) bool {
	return !slices.Contains(p.Defaulted, "payload.features."+name)
}

// workerDefault is whether a worker enables a feature when its config does
// not say: docker-worker shipped bulkLog disabled and the rest enabled.
func workerDefault(name string) bool { return name != "bulkLog" }

// featureOn decides whether a payload feature takes part in this task.
func (r *run) featureOn(f features.Feature) bool {
	name := f.Name()
	if !r.w.cfg.FeatureEnabled(name, workerDefault(name)) {
		return false
	}
	if v, ok := r.payload.Features[name]; ok && explicit(r.payload, name) {
		return v
	}
	d, ok := f.(features.Defaulter)
	return ok && d.DefaultEnabled()
}

func mergePrepare(into, from *features.PrepareResponse) error {
	for k, v := range from.Env {
		if into.Env == nil {
			into.Env = map[string]string{}
		}
		if old, ok := into.Env[k]; ok && old != v {
			return fmt.Errorf("two features set env %s", k)
		}
		into.Env[k] = v
	}
	for _, b := range from.Binds {
		target := strings.Split(b, ":")
		for _, have := range into.Binds {
			if len(target) > 1 && strings.Split(have, ":")[1] == target[1] {
				return fmt.Errorf("two features mount %s", target[1])
			}
		}
		into.Binds = append(into.Binds, b)
	}
	into.Devices = append(into.Devices, from.Devices...)
	into.CapAdd = append(into.CapAdd, from.CapAdd...)
	return nil
}

// containerSpec builds the task container from the payload, the features'
// contributions and the worker's reserved environment.
func (r *run) containerSpec(prep *features.PrepareResponse) (docker.ContainerSpec, error) {
	cfg := r.w.cfg
	p := r.payload
	privileged := p.Capabilities != nil && p.Capabilities.Privileged
	if privileged {
		pool := cfg.ProvisionerID + "/" + cfg.WorkerType
		if !scopes.Satisfied(r.def.Scopes, "docker-worker:capability:privileged") &&
			!scopes.Satisfied(r.def.Scopes, "docker-worker:capability:privileged:"+pool) {
			return docker.ContainerSpec{}, fmt.Errorf("Insufficient scopes to run task in privileged mode. Try adding docker-worker:capability:privileged:%s to the .scopes array", pool)
		}
		if !cfg.DockerConfig.AllowPrivileged {
			return docker.ContainerSpec{}, errors.New("Cannot run task using docker privileged mode.  Worker must be enabled to allow running of privileged tasks.")
		}
	}
	env := map[string]string{}
	for k, v := range prep.Env {
		env[k] = v
	}
	for k, v := range p.Env {
		env[k] = v
	}
	loc, err := cfg.WorkerLocationJSON()
	if err != nil {
		return docker.ContainerSpec{}, err
	}
	for k, v := range map[string]string{
		"TASK_ID":                     r.taskID,
		"RUN_ID":                      strconv.Itoa(r.runID),
		"TASKCLUSTER_WORKER_TYPE":     cfg.WorkerType,
		"TASKCLUSTER_WORKER_POOL":     cfg.ProvisionerID + "/" + cfg.WorkerType,
		"TASKCLUSTER_INSTANCE_TYPE":   cfg.WorkerNodeType,
		"TASKCLUSTER_WORKER_GROUP":    cfg.WorkerGroup,
		"TASKCLUSTER_PUBLIC_IP":       cfg.PublicIP,
		"TASKCLUSTER_ROOT_URL":        cfg.RootURL,
		"TASKCLUSTER_WORKER_LOCATION": loc,
	} {
		env[k] = v
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	envList := make([]string, len(keys))
	for i, k := range keys {
		envList[i] = k + "=" + env[k]
	}
	devices := make([]docker.Device, len(prep.Devices))
	for i, d := range prep.Devices {
		devices[i] = docker.Device{PathOnHost: d, PathInContainer: d, CgroupPermissions: "rwm"}
	}
	return docker.ContainerSpec{
		Cmd:        p.Command,
		Env:        envList,
		Tty:        true,
		Binds:      prep.Binds,
		CapAdd:     prep.CapAdd,
		Devices:    devices,
		Privileged: privileged,
		ShmSize:    shmSize,
		ExtraHosts: []string{localhostAlias},
		Labels: map[string]string{
			"dev.dockerworker.task-id":   r.taskID,
			"dev.dockerworker.run-id":    strconv.Itoa(r.runID),
			"dev.dockerworker.worker-id": cfg.WorkerID,
		},
	}, nil
}

// taskView is what a feature sees of the run (features.Task).
type taskView struct {
	r      *run
	logger *slog.Logger
}

var _ features.Task = (*taskView)(nil)

func (t *taskView) TaskID() string                { return t.r.taskID }
func (t *taskView) RunID() int                    { return t.r.runID }
func (t *taskView) Definition() json.RawMessage   { return t.r.def.Raw }
func (t *taskView) Payload() *schemas.Payload     { return t.r.payload }
func (t *taskView) Expires() time.Time            { return t.r.def.Expires }
func (t *taskView) Logger() *slog.Logger          { return t.logger }
func (t *taskView) Log() io.Writer                { return t.r.log }
func (t *taskView) Artifacts() features.Publisher { return publisher{t.r} }

func (t *taskView) ImageID() string {
	t.r.mu.Lock()
	defer t.r.mu.Unlock()
	return t.r.imageID
}

func (t *taskView) ArtifactHashes() map[string]string {
	t.r.mu.Lock()
	defer t.r.mu.Unlock()
	out := make(map[string]string, len(t.r.hashes))
	for k, v := range t.r.hashes {
		out[k] = v
	}
	return out
}

func (t *taskView) Worker() features.WorkerInfo {
	c := t.r.w.cfg
	return features.WorkerInfo{
		RootURL:       c.RootURL,
		ProvisionerID: c.ProvisionerID,
		WorkerType:    c.WorkerType,
		WorkerGroup:   c.WorkerGroup,
		WorkerID:      c.WorkerID,
		PublicIP:      c.PublicIP,
		PrivateIP:     c.PrivateIP,
		InstanceID:    c.InstanceID,
		InstanceType:  c.InstanceType,
		Region:        c.Region,
		Hostname:      c.Host,
	}
}

// containerFiles reads from the stopped task container (features.ContainerFiles).
type containerFiles struct {
	d  Docker
	id string
}

func (c containerFiles) CopyFrom(ctx context.Context, path string) (io.ReadCloser, bool, error) {
	return c.d.CopyFrom(ctx, c.id, path)
}
