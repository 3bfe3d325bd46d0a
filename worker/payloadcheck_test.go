package worker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/schemas"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/taskerr"
)

// stubFeature is a feature with the declarations a test gives it.
type stubFeature struct {
	name       string
	always     bool
	owns       []string
	defaultOn  bool
	workerOff  bool
	taskFeat   features.TaskFeature
	newTaskErr error
}

func (f *stubFeature) Name() string           { return f.name }
func (f *stubFeature) AlwaysOn() bool         { return f.always }
func (f *stubFeature) Owns() []string         { return f.owns }
func (f *stubFeature) DefaultEnabled() bool   { return f.defaultOn }
func (f *stubFeature) EnabledByDefault() bool { return !f.workerOff }
func (f *stubFeature) NewTask(features.Task) (features.TaskFeature, error) {
	return f.taskFeat, f.newTaskErr
}

func payload(t *testing.T, doc string) *schemas.Payload {
	t.Helper()
	v, err := schemas.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	p, problems := v.Validate([]byte(doc))
	if len(problems) > 0 {
		t.Fatalf("payload %s: %v", doc, problems)
	}
	return p
}

func TestPayloadCheck(t *testing.T) {
	feats := []features.Feature{
		&stubFeature{name: "image", always: true, owns: []string{"image.docker-image"}},
		&stubFeature{name: "caps", always: true, owns: []string{"capabilities.privileged", "capabilities.devices."}},
		&stubFeature{name: "artifacts", defaultOn: true},
		&stubFeature{name: "bulkLog", workerOff: true},
	}
	cfg := config.Default()
	cfg.ProvisionerID, cfg.WorkerType = "p", "w"
	check := NewPayloadCheck(cfg, feats)
	if got, want := check.Names(), []string{"artifacts", "bulkLog"}; !cmp.Equal(got, want) {
		t.Errorf("Names = %v, want %v", got, want)
	}
	const base = `"image": "busybox", "command": ["true"], "maxRunTime": 60`
	for _, tc := range []struct {
		name string
		doc  string
		want []string // problem strings
	}{
		{"plain", `{` + base + `}`, nil},
		{"owned capability and device prefix", `{` + base + `, "capabilities": {"privileged": true, "devices": {"kvm": true}}}`, nil},
		{"unowned sections", `{` + base + `, "cache": {"a": "/a"}, "capabilities": {"disableSeccomp": true}}`, []string{
			"payload.cache: volume caches are not supported by this worker",
			"payload.capabilities.disableSeccomp: capabilities.disableSeccomp is not supported by this worker",
		}},
		{"image type", `{"image": {"type": "task-image", "taskId": "a", "path": "public/i.tar"}, "command": ["true"], "maxRunTime": 60}`, []string{
			`payload.image.task-image: image type "task-image" is not supported by this worker`,
		}},
		{"unknown feature asked for", `{` + base + `, "features": {"taskclusterProxy": true}}`, []string{
			`payload.features.taskclusterProxy: feature "taskclusterProxy" is not supported by this worker`,
		}},
		{"feature off on the worker", `{` + base + `, "features": {"bulkLog": true}}`, []string{
			`payload.features.bulkLog: feature "bulkLog" is not enabled on this worker (p/w)`,
		}},
		{"a feature switched off asks for nothing", `{` + base + `, "features": {"taskclusterProxy": false}}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, p := range check.Check(payload(t, tc.doc)) {
				got = append(got, p.String())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPayloadCheckOn(t *testing.T) {
	arts := &stubFeature{name: "artifacts", defaultOn: true}
	bulk := &stubFeature{name: "bulkLog", workerOff: true}
	off, on := false, true
	for _, tc := range []struct {
		name string
		cfg  map[string]config.FeatureConfig
		doc  string
		f    features.Feature
		want bool
	}{
		{"default on", nil, `{}`, arts, true},
		{"payload turns it off", nil, `{"features": {"artifacts": false}}`, arts, false},
		{"worker turns it off", map[string]config.FeatureConfig{"artifacts": {Enabled: &off}}, `{"features": {"artifacts": true}}`, arts, false},
		{"worker default off", nil, `{"features": {"bulkLog": true}}`, bulk, false},
		{"worker enables, payload asks", map[string]config.FeatureConfig{"bulkLog": {Enabled: &on}}, `{"features": {"bulkLog": true}}`, bulk, true},
		{"worker enables, payload silent", map[string]config.FeatureConfig{"bulkLog": {Enabled: &on}}, `{}`, bulk, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Features = tc.cfg
			doc := strings.Replace(tc.doc, "{", `{"image": "busybox", "maxRunTime": 1, `, 1)
			doc = strings.Replace(doc, ", }", "}", 1)
			if got := NewPayloadCheck(cfg, []features.Feature{arts, bulk}).On(tc.f, payload(t, doc)); got != tc.want {
				t.Errorf("On = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestMergePrepareClashes(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b features.PrepareResponse
		want string // "" for no error
	}{
		{"same env twice", features.PrepareResponse{Env: map[string]string{"A": "1"}}, features.PrepareResponse{Env: map[string]string{"A": "1"}}, ""},
		{"env clash", features.PrepareResponse{Env: map[string]string{"A": "1"}}, features.PrepareResponse{Env: map[string]string{"A": "2"}}, "two features set env A"},
		{"mount clash", features.PrepareResponse{Mounts: []features.Mount{{Source: "/h1", Target: "/c"}}}, features.PrepareResponse{Mounts: []features.Mount{{Source: "/h2", Target: "/c/"}}}, "two features mount /c/"},
		{"relative target", features.PrepareResponse{}, features.PrepareResponse{Mounts: []features.Mount{{Source: "/h", Target: "c"}}}, `mount target "c" is not an absolute container path`},
		{"no source", features.PrepareResponse{}, features.PrepareResponse{Mounts: []features.Mount{{Target: "/c"}}}, `mount on "/c" has no source`},
		{"colon in source", features.PrepareResponse{}, features.PrepareResponse{Mounts: []features.Mount{{Source: "/h:x", Target: "/c"}}}, "contains a colon"},
		{"device clash", features.PrepareResponse{Devices: []features.Device{{HostPath: "/dev/kvm"}}}, features.PrepareResponse{Devices: []features.Device{{HostPath: "/dev/kvm"}}}, "two features add device /dev/kvm"},
		{"network clash", features.PrepareResponse{NetworkMode: "host"}, features.PrepareResponse{NetworkMode: "none"}, "two features set the network mode"},
		{"cpuset clash", features.PrepareResponse{CpusetCpus: "0"}, features.PrepareResponse{CpusetCpus: "1"}, "two features set the cpuset"},
		{"entrypoint clash", features.PrepareResponse{Entrypoint: []string{"/a"}}, features.PrepareResponse{Entrypoint: []string{"/b"}}, "two features wrap the entrypoint"},
		{"additive lists", features.PrepareResponse{CapAdd: []string{"SYS_PTRACE"}, Links: []string{"p:taskcluster"}}, features.PrepareResponse{CapAdd: []string{"SYS_PTRACE"}, Privileged: true}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var into features.PrepareResponse
			if err := mergePrepare(&into, &tc.a); err != nil {
				t.Fatalf("first merge: %v", err)
			}
			err := mergePrepare(&into, &tc.b)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestHooksAllowSmallest(t *testing.T) {
	var h hooks
	h.beforeClaim = []features.BeforeClaimHook{
		func(context.Context, int) (int, string) { return 5, "" },
		func(_ context.Context, want int) (int, string) { return want - 1, "disk" },
		func(context.Context, int) (int, string) { return 2, "devices" },
		func(context.Context, int) (int, string) { return -3, "" },
	}
	n, reason := h.allow(t.Context(), 4)
	if n != 0 || reason != "disk; devices; no reason given" {
		t.Errorf("allow = %d %q, want 0 and every reason", n, reason)
	}
	h.beforeClaim = h.beforeClaim[:1]
	if n, reason := h.allow(t.Context(), 4); n != 4 || reason != "" {
		t.Errorf("allow = %d %q, want 4 and no reason", n, reason)
	}
}

func TestRegistryCancel(t *testing.T) {
	g := newRegistry()
	ctx, cancel := context.WithCancelCause(t.Context())
	r := &run{taskID: "t", runID: 1, ctx: ctx, cancelFn: cancel}
	g.add(r)
	if got := g.List(); !cmp.Equal(got, []features.RunRef{{TaskID: "t", RunID: 1}}) {
		t.Errorf("List = %v", got)
	}
	if g.Cancel("t", 0, nil) || g.Cancel("u", 1, nil) {
		t.Error("Cancel of a run the worker does not hold reported true")
	}
	if !g.Cancel("t", 1, context.Canceled) {
		t.Fatal("Cancel of a held run reported false")
	}
	if ctx.Err() == nil {
		t.Fatal("run context not cancelled")
	}
	if k := classifyCause(ctx); k != "canceled" {
		t.Errorf("cause classifies as %s, want canceled", k)
	}
	g.remove(r)
	if len(g.List()) != 0 {
		t.Error("removed run still listed")
	}
}

func classifyCause(ctx context.Context) string {
	return taskerr.Classify(context.Cause(ctx)).String()
}

// checkerFeature is a stub feature that also refuses payloads.
type checkerFeature struct {
	stubFeature
	problems []schemas.Problem
}

func (f *checkerFeature) CheckPayload(*schemas.Payload) []schemas.Problem { return f.problems }

func TestPayloadCheckInvalid(t *testing.T) {
	feats := []features.Feature{
		&stubFeature{name: "image", always: true, owns: []string{"image.docker-image"}},
		&checkerFeature{stubFeature: stubFeature{name: "first", workerOff: true},
			problems: []schemas.Problem{{Path: "payload.artifacts.x", Message: "first refuses"}}},
		&checkerFeature{stubFeature: stubFeature{name: "second"}},
		&checkerFeature{stubFeature: stubFeature{name: "third", always: true},
			problems: []schemas.Problem{{Path: "payload.image", Message: "third refuses"}}},
	}
	check := NewPayloadCheck(config.Default(), feats)
	const base = `"image": "busybox", "maxRunTime": 60`
	features := []string{"payload.artifacts.x: first refuses", "payload.image: third refuses"}
	for _, tc := range []struct {
		name string
		doc  string
		want []string // before the features' problems
	}{
		{"fine", `{` + base + `, "command": ["sh", "-c", "echo \u00e9"], "env": {"A": "", "B=C": "x", "\u00e9": "\u00e9"}, "log": "public/logs/x.log"}`, nil},
		{"NUL in a command word", `{` + base + `, "command": ["ok", "a\u0000", "b\u0000c"]}`, []string{
			`payload.command[1]: "a\x00" must not contain a NUL byte`,
			`payload.command[2]: "b\x00c" must not contain a NUL byte`,
		}},
		{"env names and values, sorted by name", `{` + base + `, "env": {"Z": "\u0000", "": "v", "A\u0000": "x\u0000"}}`, []string{
			`payload.env[""]: an environment variable name must not be empty`,
			`payload.env["A\x00"]: the environment variable name "A\x00" must not contain a NUL byte`,
			`payload.env["A\x00"]: the value "x\x00" must not contain a NUL byte`,
			`payload.env.Z: the value "\x00" must not contain a NUL byte`,
		}},
		{"log name", `{` + base + `, "log": "public/logs/\u00fc.log"}`, []string{
			`payload.log: bad artifact name: "ü" at byte 12 is not printable ASCII (only 0x20 to 0x7e are allowed)`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, pr := range check.Invalid(payload(t, tc.doc)) {
				got = append(got, pr.String())
			}
			if diff := cmp.Diff(append(tc.want, features...), got); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

// CheckPayload reports the values no run can use with the schema's
// problems, and checks what the worker provides only for payloads without
// any.
func TestCheckPayloadInvalidValues(t *testing.T) {
	v, err := schemas.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	check := NewPayloadCheck(config.Default(), []features.Feature{
		&checkerFeature{stubFeature: stubFeature{name: "image", always: true, owns: []string{"image.docker-image"}},
			problems: []schemas.Problem{{Path: "payload.image", Message: "no"}}},
	})
	p, invalid, unsupported := CheckPayload(v, check, []byte(`{"image": "x", "command": ["\u0000"], "maxRunTime": 1, "cache": {"c": "/c"}}`), time.Time{})
	var got []string
	for _, pr := range invalid {
		got = append(got, pr.String())
	}
	want := []string{`payload.command[0]: "\x00" must not contain a NUL byte`, "payload.image: no"}
	if p != nil || len(unsupported) != 0 || !cmp.Equal(got, want) {
		t.Errorf("CheckPayload = %v, %q, %v; want nil, %q and nothing unsupported", p, got, unsupported, want)
	}
}
