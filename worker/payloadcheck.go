package worker

import (
	"fmt"
	"sort"
	"strings"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/schemas"
	"go.dockerworker.dev/docker-worker/worker/artifacts"
	"go.dockerworker.dev/docker-worker/worker/config"
)

// PayloadCheck decides which features take part in a task and refuses
// payloads that ask for what no enabled feature provides. The runner and
// `docker-worker validate` use the same check.
type PayloadCheck struct {
	cfg   *config.Config
	feats []features.Feature
}

// NewPayloadCheck returns the check for a worker with cfg and feats.
func NewPayloadCheck(cfg *config.Config, feats []features.Feature) *PayloadCheck {
	return &PayloadCheck{cfg: cfg, feats: feats}
}

// Names are the names of the payload features (not the always-on ones), in
// list order.
func (c *PayloadCheck) Names() []string {
	var out []string
	for _, f := range c.feats {
		if !alwaysOn(f) {
			out = append(out, f.Name())
		}
	}
	return out
}

func alwaysOn(f features.Feature) bool {
	a, ok := f.(features.AlwaysOn)
	return ok && a.AlwaysOn()
}

// Enabled reports whether the worker's config lets f take part in tasks:
// always-on features always do; payload features unless
// features.<name>.enabled says no (or the feature is off by default, see
// [features.WorkerDefaulter], and the config does not turn it on).
func (c *PayloadCheck) Enabled(f features.Feature) bool {
	if alwaysOn(f) {
		return true
	}
	def := true
	if d, ok := f.(features.WorkerDefaulter); ok {
		def = d.EnabledByDefault()
	}
	return c.cfg.FeatureEnabled(f.Name(), def)
}

// On reports whether payload feature f takes part in a task with payload p.
func (c *PayloadCheck) On(f features.Feature, p *schemas.Payload) bool {
	if alwaysOn(f) {
		return true
	}
	if !c.Enabled(f) {
		return false
	}
	name := f.Name()
	if v, ok := p.Features[name]; ok && p.Explicit("features."+name) {
		return v
	}
	d, ok := f.(features.Defaulter)
	return ok && d.DefaultEnabled()
}

// Owner returns the feature serving payload section s, and whether one
// exists (enabled or not).
func (c *PayloadCheck) Owner(s string) (features.Feature, bool) {
	for _, f := range c.feats {
		if !alwaysOn(f) && s == "features."+f.Name() {
			return f, true
		}
		if o, ok := f.(features.Owner); ok {
			for _, own := range o.Owns() {
				if own == s || (strings.HasSuffix(own, ".") && strings.HasPrefix(s, own)) {
					return f, true
				}
			}
		}
	}
	return nil, false
}

// Check lists what p asks for that this worker cannot give: sections no
// feature serves, and sections of features the worker's config disables.
func (c *PayloadCheck) Check(p *schemas.Payload) []schemas.Problem {
	var out []schemas.Problem
	pool := c.cfg.ProvisionerID + "/" + c.cfg.WorkerType
	for _, s := range p.Sections() {
		f, ok := c.Owner(s)
		switch {
		case !ok:
			out = append(out, schemas.Problem{Path: "payload." + s, Message: unsupportedMessage(s, p)})
		case !c.Enabled(f) && strings.HasPrefix(s, "features."):
			out = append(out, schemas.Problem{Path: "payload." + s,
				Message: fmt.Sprintf("feature %q is not enabled on this worker (%s)", f.Name(), pool)})
		case !c.Enabled(f):
			out = append(out, schemas.Problem{Path: "payload." + s,
				Message: fmt.Sprintf("%s needs feature %q, which is not enabled on this worker (%s)", s, f.Name(), pool)})
		}
	}
	return out
}

// Invalid lists the values of p that the schema accepts but that no run
// can use: the core's (env, command, log) first, then what each feature
// implementing [features.PayloadChecker] refuses, in list order. Every
// feature is asked, enabled or not: such a value is wrong on any worker.
func (c *PayloadCheck) Invalid(p *schemas.Payload) []schemas.Problem {
	out := coreProblems(p)
	for _, f := range c.feats {
		if pc, ok := f.(features.PayloadChecker); ok {
			out = append(out, pc.CheckPayload(p)...)
		}
	}
	return out
}

// coreProblems checks the parts of the payload the core itself puts into
// the container and the log: an environment variable needs a name, and no
// name, value or command word may hold a NUL byte (the kernel ends strings
// there, so the container could not get what the payload says); the live
// log's name must be an artifact name.
func coreProblems(p *schemas.Payload) []schemas.Problem {
	var out []schemas.Problem
	add := func(path, msg string) { out = append(out, schemas.Problem{Path: path, Message: msg}) }
	keys := make([]string, 0, len(p.Env))
	for k := range p.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		at := schemas.MemberPath("payload.env", k)
		switch {
		case k == "":
			add(at, "an environment variable name must not be empty")
		case strings.IndexByte(k, 0) >= 0:
			add(at, fmt.Sprintf("the environment variable name %q must not contain a NUL byte", k))
		}
		if v := p.Env[k]; strings.IndexByte(v, 0) >= 0 {
			add(at, fmt.Sprintf("the value %q must not contain a NUL byte", v))
		}
	}
	for i, word := range p.Command {
		if strings.IndexByte(word, 0) >= 0 {
			add(schemas.IndexPath("payload.command", i), fmt.Sprintf("%q must not contain a NUL byte", word))
		}
	}
	if err := artifacts.CheckArtifactName(p.Log); err != nil {
		add("payload.log", err.Error())
	}
	return out
}

func unsupportedMessage(s string, p *schemas.Payload) string {
	switch {
	case strings.HasPrefix(s, "features."):
		return fmt.Sprintf("feature %q is not supported by this worker", strings.TrimPrefix(s, "features."))
	case strings.HasPrefix(s, "image."):
		return fmt.Sprintf("image type %q is not supported by this worker", p.Image.Type)
	case s == "cache":
		return "volume caches are not supported by this worker"
	case strings.HasPrefix(s, "capabilities.devices."):
		return fmt.Sprintf("device %q is not supported by this worker", strings.TrimPrefix(s, "capabilities.devices."))
	}
	return fmt.Sprintf("%s is not supported by this worker", s)
}
