package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/schemas"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/scopes"
	"go.dockerworker.dev/docker-worker/worker/taskerr"
)

// execute runs everything up to and including the Exited phase: the
// always-on features, the header, validation, the payload features, the
// scope check, the image, Prepare and the container. A run cut off by the
// Docker daemon going away says so in its log; taskerr classifies it
// worker-shutdown.
func (r *run) execute(ctx context.Context) outcome {
	out := r.executeSteps(ctx)
	if de, ok := docker.AsDaemonError(out.err); ok {
		msg := faultMessage(out.err)
		r.logger.Error("task cut off by a Docker daemon fault", "error", msg)
		r.log.Errorf("%s: %s", de.What, msg)
	}
	return out
}

// faultMessage is the message of the first of err's joined errors that
// holds a Docker daemon error: the failed step with its cause.
func faultMessage(err error) string {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if _, ok := docker.AsDaemonError(e); ok {
				return faultMessage(e)
			}
		}
	}
	return err.Error()
}

func (r *run) executeSteps(ctx context.Context) outcome {
	out := outcome{exitCode: -1}
	fail := func(err error) outcome { out.err = errors.Join(out.err, err); return out }

	// Always-on features first: the task log needs its sinks before the header.
	for _, f := range r.w.opts.Features {
		if alwaysOn(f) {
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
		if !alwaysOn(f) && r.w.check.On(f, r.payload) {
			if err := r.activate(ctx, f, early.bytes()); err != nil {
				r.log.Errorf("Task was aborted because states could not be created successfully. %v", err)
				return fail(err)
			}
		}
	}
	early.stop()

	if err := r.checkScopes(); err != nil {
		r.log.Errorf("Docker configuration could not be created.  This may indicate an authentication error when validating scopes necessary for running the task. \n %v", err)
		return fail(err)
	}

	img, err := r.provideImage(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return out
		}
		return fail(err)
	}
	r.res.SetImage(img)
	r.w.hooks.emit(features.Event{Kind: features.ImageReady, Run: r.ref(), At: r.w.now(), Image: img.Fetch})
	r.mark(features.PhaseImage)

	var prep features.PrepareResponse
	if err := r.eachPhase("prepare", true, func(f activeFeature) error {
		p, ok := f.tf.(features.Preparer)
		if !ok {
			return nil
		}
		var resp features.PrepareResponse
		if err := p.Prepare(ctx, &features.PrepareRequest{Image: img}, &resp); err != nil {
			return err
		}
		for _, c := range resp.Caches {
			r.w.hooks.emit(features.Event{Kind: features.CacheUsed, Run: r.ref(), At: r.w.now(), Cache: c})
		}
		return taskerrInternal(mergePrepare(&prep, &resp))
	}); err != nil {
		r.log.Errorf("Task was aborted because states could not be created successfully. %v", err)
		return fail(err)
	}
	if ctx.Err() != nil {
		return out
	}
	for _, line := range prep.LogLines {
		r.log.Infof("%s", line)
	}
	spec, err := r.containerSpec(img, &prep)
	if err != nil {
		r.log.Errorf("Docker configuration could not be created. %v", err)
		return fail(taskerr.InternalError(err))
	}
	return r.runContainer(ctx, spec, out)
}

func taskerrInternal(err error) error {
	if err == nil {
		return nil
	}
	return taskerr.InternalError(err)
}

// validate checks the payload against the schema and what this worker can
// run; every problem is written to the task log.
func (r *run) validate() error {
	p, invalid, unsupported := CheckPayload(r.w.opts.Validator, r.w.check, r.def.Payload, r.def.Expires)
	if len(invalid) > 0 {
		lines := problemLines(invalid)
		r.log.Errorf("%s\n %s", InvalidHeading, strings.Join(lines, "\n "))
		return taskerr.MalformedPayload(fmt.Errorf("payload is invalid: %s", strings.Join(lines, "; ")))
	}
	if len(unsupported) > 0 {
		lines := problemLines(unsupported)
		r.log.Errorf("%s\n %s", UnsupportedHeading, strings.Join(lines, "\n "))
		return taskerr.MalformedPayload(fmt.Errorf("payload not supported: %s", strings.Join(lines, "; ")))
	}
	r.payload = p
	return nil
}

// The task log's headings over payload problems: docker-worker's for
// schema errors, ours for what the worker does not provide.
const (
	InvalidHeading     = "`task.payload` format is invalid json schema errors:"
	UnsupportedHeading = "The payload asks for what this worker does not provide:"
)

// CheckPayload is the whole check a worker runs on a payload before it
// starts anything: the schema, the artifact expiries and the values no run
// can use ([PayloadCheck.Invalid]) (invalid), then what check's features
// cannot serve (unsupported, only when the payload is valid). expires is
// the task's expiry (zero: not checked).
func CheckPayload(v *schemas.Validator, check *PayloadCheck, raw []byte, expires time.Time) (p *schemas.Payload, invalid, unsupported []schemas.Problem) {
	p, invalid = v.Validate(raw)
	if p != nil && !expires.IsZero() {
		invalid = append(invalid, schemas.CheckArtifactExpiry(p, expires)...)
	}
	if p != nil {
		invalid = append(invalid, check.Invalid(p)...)
	}
	if len(invalid) > 0 || p == nil {
		return nil, invalid, nil
	}
	return p, nil, check.Check(p)
}

func problemLines(problems []schemas.Problem) []string {
	lines := make([]string, len(problems))
	for i, pr := range problems {
		lines[i] = pr.String()
	}
	return lines
}

// checkScopes checks what the active features require of the task's
// scopes; every unmet requirement is reported.
func (r *run) checkScopes() error {
	var errs []error
	for _, f := range r.active {
		s, ok := f.tf.(features.ScopeRequirer)
		if !ok {
			continue
		}
		for _, req := range s.RequiredScopes() {
			if !slices.ContainsFunc(req.AnyOf, func(want string) bool { return scopes.Satisfied(r.def.Scopes, want) }) {
				errs = append(errs, errors.New(req.Message))
			}
		}
	}
	return errors.Join(errs...)
}

// provideImage asks the feature owning the payload's image type for the
// task image.
func (r *run) provideImage(ctx context.Context) (features.Image, error) {
	section := "image." + r.payload.Image.Type
	owner, _ := r.w.check.Owner(section)
	for _, f := range r.active {
		if owner == nil || f.name != owner.Name() {
			continue
		}
		p, ok := f.tf.(features.ImageProvider)
		if !ok {
			break
		}
		var img features.Image
		began := r.w.now()
		err := r.callPhase("image", f, func(activeFeature) error {
			var err error
			img, err = p.ProvideImage(ctx, &features.ImageRequest{})
			return err
		})
		img.Fetch.Took = r.w.now().Sub(began)
		if err != nil {
			return features.Image{}, fmt.Errorf("feature %s: %w", f.name, err)
		}
		if img.ID == "" {
			return features.Image{}, taskerr.InternalError(fmt.Errorf("feature %s provided no image ID", f.name))
		}
		return img, nil
	}
	return features.Image{}, taskerr.InternalError(fmt.Errorf("no active feature provides %s", section))
}

// activate creates a feature's per-task part and opens it; its log sinks
// first receive replay, what the log held before they were added.
func (r *run) activate(ctx context.Context, f features.Feature, replay []byte) error {
	af := activeFeature{name: f.Name()}
	err := r.callPhase("new", af, func(activeFeature) error {
		tf, err := f.NewTask(&taskView{r: r, logger: r.logger.With("feature", f.Name())})
		af.tf = tf
		return err
	})
	if err != nil {
		return fmt.Errorf("feature %s: %w", f.Name(), err)
	}
	if af.tf == nil {
		return nil
	}
	r.active = append(r.active, af)
	o, ok := af.tf.(features.Opener)
	if !ok {
		return nil
	}
	var resp features.OpenResponse
	if err := r.callPhase("open", af, func(activeFeature) error {
		return o.Open(ctx, &features.OpenRequest{}, &resp)
	}); err != nil {
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
