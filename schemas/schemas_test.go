package schemas

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

func newTestValidator(tb testing.TB) *Validator {
	tb.Helper()
	v, err := NewValidator()
	if err != nil {
		tb.Fatalf("NewValidator: %v", err)
	}
	return v
}

type payloadCase struct {
	name  string
	json  string
	valid bool
}

// payloadCases are hand-written payloads with the verdict docker-worker's
// schema gives them.
var payloadCases = []payloadCase{
	// valid
	{"string image", `{"image":"ubuntu:24.04","maxRunTime":1}`, true},
	{"missing command accepted", `{"image":"ubuntu","maxRunTime":600,"env":{"A":"b"}}`, true},
	{"docker-image object", `{"image":{"type":"docker-image","name":"ubuntu:24.04"},"maxRunTime":1}`, true},
	{"indexed-image object", `{"image":{"type":"indexed-image","namespace":"a.b.c","path":"public/image.tar.zst"},"maxRunTime":1}`, true},
	{"task-image object", `{"image":{"type":"task-image","taskId":"csTL863FQYCK82XEFjMhMw","path":"public/image.tar"},"maxRunTime":1}`, true},
	{"command array", `{"image":"x","maxRunTime":1,"command":["/bin/sh","-c","true"]}`, true},
	{"empty command", `{"image":"x","maxRunTime":1,"command":[]}`, true},
	{"env strings", `{"image":"x","maxRunTime":1,"env":{"A":"1","B":""}}`, true},
	{"cache map", `{"image":"x","maxRunTime":1,"cache":{"level-3-cache":"/home/worker/.cache"}}`, true},
	{"artifact types", `{"image":"x","maxRunTime":1,"artifacts":{"public/f":{"type":"file","path":"/f"},"public/d":{"type":"directory","path":"/d","expires":"2030-01-01T00:00:00.000Z"},"public/v":{"type":"volume","path":"/v"}}}`, true},
	{"artifact expires with offset", `{"image":"x","maxRunTime":1,"artifacts":{"a":{"type":"file","path":"/a","expires":"2030-01-01T00:00:00+02:00"}}}`, true},
	{"artifact expires lower-case", `{"image":"x","maxRunTime":1,"artifacts":{"a":{"type":"file","path":"/a","expires":"2030-01-01t00:00:00.5z"}}}`, true},
	{"empty artifacts", `{"image":"x","maxRunTime":1,"artifacts":{}}`, true},
	{"maxRunTime 1.0 is an integer", `{"image":"x","maxRunTime":1.0}`, true},
	{"maxRunTime has no maximum", `{"image":"x","maxRunTime":604801}`, true},
	{"exit statuses", `{"image":"x","maxRunTime":1,"onExitStatus":{"retry":[36,-1],"purgeCaches":[72]}}`, true},
	{"empty onExitStatus", `{"image":"x","maxRunTime":1,"onExitStatus":{}}`, true},
	{"capabilities", `{"image":"x","maxRunTime":1,"capabilities":{"privileged":true,"disableSeccomp":true}}`, true},
	{"devices", `{"image":"x","maxRunTime":1,"capabilities":{"devices":{"loopbackVideo":true,"loopbackAudio":false,"hostSharedMemory":true,"kvm":true}}}`, true},
	{"dind and dockerSave", `{"image":"x","maxRunTime":1,"features":{"dind":true,"dockerSave":true}}`, true},
	{"all features", `{"image":"x","maxRunTime":1,"features":{"localLiveLog":false,"bulkLog":false,"taskclusterProxy":true,"artifacts":false,"dind":false,"dockerSave":false,"interactive":true,"allowPtrace":true,"chainOfTrust":true}}`, true},
	{"custom log", `{"image":"x","maxRunTime":1,"log":"private/logs/live.log"}`, true},
	{"supersederUrl", `{"image":"x","maxRunTime":1,"supersederUrl":"https://example.com/s"}`, true},

	// invalid
	{"missing image", `{"maxRunTime":1}`, false},
	{"missing maxRunTime", `{"image":"x"}`, false},
	{"maxRunTime string", `{"image":"x","maxRunTime":"hello"}`, false},
	{"maxRunTime 0", `{"image":"x","maxRunTime":0}`, false},
	{"maxRunTime negative", `{"image":"x","maxRunTime":-5}`, false},
	{"maxRunTime 1.5", `{"image":"x","maxRunTime":1.5}`, false},
	{"retry string item", `{"image":"x","maxRunTime":1,"onExitStatus":{"retry":["1"]}}`, false},
	{"purgeCaches fractional item", `{"image":"x","maxRunTime":1,"onExitStatus":{"purgeCaches":[1.5]}}`, false},
	{"retry not an array", `{"image":"x","maxRunTime":1,"onExitStatus":{"retry":36}}`, false},
	{"onExitStatus unknown key", `{"image":"x","maxRunTime":1,"onExitStatus":{"fail":[1]}}`, false},
	{"env boolean value", `{"image":"x","maxRunTime":1,"env":{"NEED_XVFB":true}}`, false},
	{"env number value", `{"image":"x","maxRunTime":1,"env":{"N":1}}`, false},
	{"env not an object", `{"image":"x","maxRunTime":1,"env":["A=b"]}`, false},
	{"unknown top-level key", `{"image":"x","maxRunTime":1,"foo":1}`, false},
	{"historical encryptedEnv", `{"image":"x","maxRunTime":1,"encryptedEnv":[]}`, false},
	{"unknown feature", `{"image":"x","maxRunTime":1,"features":{"relengAPIProxy":true}}`, false},
	{"feature not boolean", `{"image":"x","maxRunTime":1,"features":{"dind":"true"}}`, false},
	{"features not an object", `{"image":"x","maxRunTime":1,"features":true}`, false},
	{"image object unknown type", `{"image":{"type":"foo","name":"x"},"maxRunTime":1}`, false},
	{"image object without type", `{"image":{"name":"x"},"maxRunTime":1}`, false},
	{"indexed-image missing path", `{"image":{"type":"indexed-image","namespace":"a.b"},"maxRunTime":1}`, false},
	{"task-image missing taskId", `{"image":{"type":"task-image","path":"public/image.tar"},"maxRunTime":1}`, false},
	{"docker-image extra property", `{"image":{"type":"docker-image","name":"x","path":"y"},"maxRunTime":1}`, false},
	{"docker-image name not a string", `{"image":{"type":"docker-image","name":5},"maxRunTime":1}`, false},
	{"image number", `{"image":5,"maxRunTime":1}`, false},
	{"image null", `{"image":null,"maxRunTime":1}`, false},
	{"image array", `{"image":["x"],"maxRunTime":1}`, false},
	{"command string", `{"image":"x","maxRunTime":1,"command":"ls -l"}`, false},
	{"command number item", `{"image":"x","maxRunTime":1,"command":["sleep",5]}`, false},
	{"cache value not a string", `{"image":"x","maxRunTime":1,"cache":{"c":true}}`, false},
	{"artifact type link", `{"image":"x","maxRunTime":1,"artifacts":{"a":{"type":"link","path":"/a"}}}`, false},
	{"artifact missing path", `{"image":"x","maxRunTime":1,"artifacts":{"a":{"type":"file"}}}`, false},
	{"artifact missing type", `{"image":"x","maxRunTime":1,"artifacts":{"a":{"path":"/a"}}}`, false},
	{"artifact extra property", `{"image":"x","maxRunTime":1,"artifacts":{"a":{"type":"file","path":"/a","name":"a"}}}`, false},
	{"artifact expires not a date-time", `{"image":"x","maxRunTime":1,"artifacts":{"a":{"type":"file","path":"/a","expires":"hello"}}}`, false},
	{"artifact expires date only", `{"image":"x","maxRunTime":1,"artifacts":{"a":{"type":"file","path":"/a","expires":"2030-01-01"}}}`, false},
	{"artifact expires number", `{"image":"x","maxRunTime":1,"artifacts":{"a":{"type":"file","path":"/a","expires":1893456000}}}`, false},
	{"unknown device", `{"image":"x","maxRunTime":1,"capabilities":{"devices":{"phone":true}}}`, false},
	{"device not boolean", `{"image":"x","maxRunTime":1,"capabilities":{"devices":{"kvm":1}}}`, false},
	{"privileged not boolean", `{"image":"x","maxRunTime":1,"capabilities":{"privileged":"yes"}}`, false},
	{"unknown capability", `{"image":"x","maxRunTime":1,"capabilities":{"net":true}}`, false},
	{"log not a string", `{"image":"x","maxRunTime":1,"log":5}`, false},
	{"supersederUrl not a string", `{"image":"x","maxRunTime":1,"supersederUrl":{}}`, false},
	{"top-level array", `[]`, false},
	{"top-level string", `"payload"`, false},
	{"top-level null", `null`, false},
	{"empty object", `{}`, false},
}

func TestPayloadCases(t *testing.T) {
	v := newTestValidator(t)
	for _, tc := range payloadCases {
		t.Run(tc.name, func(t *testing.T) {
			p, probs := v.Validate([]byte(tc.json))
			if got := len(probs) == 0; got != tc.valid {
				t.Errorf("valid=%v, want %v; problems: %v", got, tc.valid, probs)
			}
			if (p != nil) == (len(probs) != 0) {
				t.Errorf("payload %v returned with problems %v", p, probs)
			}
		})
	}
}

func TestPayloadCasesAgreeWithReference(t *testing.T) {
	ours := newTestValidator(t)
	ref := referenceValidator(t)
	for _, tc := range payloadCases {
		t.Run(tc.name, func(t *testing.T) {
			_, probs := ours.Validate([]byte(tc.json))
			_, refProbs := ref.Validate([]byte(tc.json))
			if (len(probs) == 0) != (len(refProbs) == 0) {
				t.Errorf("ours %v, reference %v", probs, refProbs)
			}
			if got := len(refProbs) == 0; got != tc.valid {
				t.Errorf("reference valid=%v, want %v; problems: %v", got, tc.valid, refProbs)
			}
		})
	}
}

// expectedFileVerdicts is the expected validity of each reference payload
// once placeholder dates are filled in.
var expectedFileVerdicts = map[string]bool{
	"06-taskcluster-treeherder-fixture-gecko-b2g-reftest-2016.task.json": false, // env value is a boolean
}

func TestReferencePayloadsAgree(t *testing.T) {
	ours := newTestValidator(t)
	ref := referenceValidator(t)
	payloads := referencePayloads(t)
	if len(payloads) < 10 {
		t.Fatalf("found only %d reference payloads", len(payloads))
	}
	for _, np := range payloads {
		for _, variant := range []struct {
			name string
			raw  []byte
		}{
			{"as-is", np.raw},
			{"filled", fillPlaceholders(t, np.raw)},
		} {
			t.Run(np.name+"/"+variant.name, func(t *testing.T) {
				_, probs := ours.Validate(variant.raw)
				_, refProbs := ref.Validate(variant.raw)
				if (len(probs) == 0) != (len(refProbs) == 0) {
					t.Fatalf("disagreement: ours %v, reference %v", probs, refProbs)
				}
				if variant.name != "filled" {
					return
				}
				file, _, _ := strings.Cut(np.name, "/")
				want, ok := expectedFileVerdicts[file]
				if !ok {
					want = true
				}
				if got := len(probs) == 0; got != want {
					t.Errorf("valid=%v, want %v; problems: %v", got, want, probs)
				}
			})
		}
	}
}

// TestSchemaMatchesReference checks that, apart from titles and
// descriptions and the documented differences below, our schema is the
// reference schema.
func TestSchemaMatchesReference(t *testing.T) {
	refDoc := loadReferenceDoc(t)
	// Documented difference (README, compatibility): `cache: null` runs
	// with no caches, as docker-worker's own test "empty cache does not
	// throw" expects, instead of failing validation.
	cache := refDoc.(map[string]any)["properties"].(map[string]any)["cache"].(map[string]any)
	if cache["type"] != "object" {
		t.Fatalf("reference cache type changed: %v", cache["type"])
	}
	cache["type"] = []any{"object", "null"}
	ours, err := jsonschema.UnmarshalJSON(strings.NewReader(string(newTestValidator(t).SchemaJSON())))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(stripAnnotations(refDoc, ""), stripAnnotations(ours, "")); diff != "" {
		t.Errorf("schema differs from reference (-reference +ours):\n%s", diff)
	}
}

// stripAnnotations removes title and description keywords, leaving members
// of "properties" and "definitions" (which are names, not keywords) alone.
func stripAnnotations(v any, parentKey string) any {
	switch v := v.(type) {
	case map[string]any:
		m := map[string]any{}
		for k, e := range v {
			if parentKey != "properties" && parentKey != "definitions" && (k == "title" || k == "description") {
				continue
			}
			m[k] = stripAnnotations(e, k)
		}
		return m
	case []any:
		a := make([]any, len(v))
		for i, e := range v {
			a[i] = stripAnnotations(e, "")
		}
		return a
	default:
		return v
	}
}

func TestProblems(t *testing.T) {
	v := newTestValidator(t)
	tests := []struct {
		name string
		json string
		want []string
	}{
		{
			"maxRunTime and retry types",
			`{"maxRunTime":"hello","image":"x","onExitStatus":{"retry":["1"]}}`,
			[]string{
				"payload.maxRunTime: must be integer",
				"payload.onExitStatus.retry[0]: must be integer",
			},
		},
		{
			"three independent errors",
			`{"image":"x","maxRunTime":0,"foo":1,"env":{"A":1}}`,
			[]string{
				`payload: additional property "foo" is not allowed`,
				"payload.env.A: must be string",
				"payload.maxRunTime: must be >= 1",
			},
		},
		{"missing required", `{}`, []string{
			`payload: missing required property "image"`,
			`payload: missing required property "maxRunTime"`,
		}},
		{"fractional maxRunTime", `{"image":"x","maxRunTime":1.5}`, []string{"payload.maxRunTime: must be integer"}},
		{"unknown feature", `{"image":"x","maxRunTime":1,"features":{"nope":true}}`, []string{
			`payload.features: additional property "nope" is not allowed`,
		}},
		{"bad expires", `{"image":"x","maxRunTime":1,"artifacts":{"public/x":{"type":"file","path":"/x","expires":"hello"}}}`, []string{
			`payload.artifacts["public/x"].expires: "hello" is not a valid date-time`,
		}},
		{"artifact type enum", `{"image":"x","maxRunTime":1,"artifacts":{"a":{"type":"link","path":"/a"}}}`, []string{
			`payload.artifacts.a.type: must be one of "file", "directory", "volume"`,
		}},
		{"image of wrong JSON type", `{"image":5,"maxRunTime":1}`, []string{"payload.image: must be string or object"}},
		{"image with unknown type", `{"image":{"type":"foo","name":"x"},"maxRunTime":1}`, []string{
			`payload.image.type: must be one of "docker-image", "indexed-image", "task-image"`,
		}},
		{"indexed-image missing path", `{"image":{"type":"indexed-image","namespace":"a"},"maxRunTime":1}`, []string{
			`payload.image: missing required property "path"`,
		}},
		{"task-image extra member", `{"image":{"type":"task-image","taskId":"t","path":"p","name":"n"},"maxRunTime":1}`, []string{
			`payload.image: additional property "name" is not allowed`,
		}},
		{"image without type", `{"image":{"name":"x"},"maxRunTime":1}`, []string{
			`payload.image: missing required property "type"`,
		}},
		{"command item", `{"image":"x","maxRunTime":1,"command":["a",2]}`, []string{"payload.command[1]: must be string"}},
		{"odd key quoting", `{"image":"x","maxRunTime":1,"cache":{"a b":1,"0":2}}`, []string{
			`payload.cache["0"]: must be string`,
			`payload.cache["a b"]: must be string`,
		}},
		{"integer beyond Go's int", `{"image":"x","maxRunTime":1e30}`, []string{
			"payload.maxRunTime: number 1000000000000000000000000000000 is out of range",
		}},
		{"not an object", `[1]`, []string{"payload: must be object"}},
		{"invalid JSON", `{"image":`, []string{"payload: invalid JSON: unexpected EOF"}},
		{"trailing data", `{} {}`, []string{"payload: invalid JSON: unexpected data after the top-level value"}},
		{"empty input", ``, []string{"payload: invalid JSON: EOF"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, probs := v.Validate([]byte(tc.json))
			if p != nil {
				t.Errorf("got payload %+v for an invalid input", p)
			}
			got := make([]string, len(probs))
			for i, pr := range probs {
				got[i] = pr.String()
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidateDecodesAndAppliesDefaults(t *testing.T) {
	v := newTestValidator(t)
	raw := `{
		"image": {"type": "indexed-image", "namespace": "proj.fuzzing", "path": "public/image.tar.zst"},
		"maxRunTime": 3.6e3,
		"command": ["/bin/sh", "-c", "true"],
		"env": {"A": "b"},
		"cache": {"c": "/cache"},
		"artifacts": {
			"public/a": {"type": "file", "path": "/a", "expires": "2030-01-02T03:04:05.678Z"},
			"public/b": {"type": "directory", "path": "/b"}
		},
		"onExitStatus": {"retry": [36], "purgeCaches": [72, 1.0]},
		"capabilities": {"privileged": true, "devices": {"kvm": true, "loopbackAudio": false}},
		"features": {"taskclusterProxy": true, "bulkLog": false},
		"supersederUrl": "u"
	}`
	p, probs := v.Validate([]byte(raw))
	if len(probs) != 0 {
		t.Fatalf("unexpected problems: %v", probs)
	}
	exp := time.Date(2030, 1, 2, 3, 4, 5, 678000000, time.UTC)
	want := &Payload{
		Image:      Image{Type: ImageTypeIndexedImage, Namespace: "proj.fuzzing", Path: "public/image.tar.zst"},
		Command:    []string{"/bin/sh", "-c", "true"},
		Env:        map[string]string{"A": "b"},
		MaxRunTime: 3600,
		Cache:      map[string]string{"c": "/cache"},
		Artifacts: map[string]Artifact{
			"public/a": {Type: "file", Path: "/a", Expires: &exp},
			"public/b": {Type: "directory", Path: "/b"},
		},
		Log:          "public/logs/live.log",
		OnExitStatus: &OnExitStatus{Retry: []int{36}, PurgeCaches: []int{72, 1}},
		Capabilities: &Capabilities{Privileged: true, Devices: map[string]bool{"kvm": true, "loopbackAudio": false}},
		Features: map[string]bool{
			"taskclusterProxy": true, "bulkLog": false,
			"localLiveLog": true, "artifacts": true, "dind": false, "dockerSave": false,
			"interactive": false, "allowPtrace": false, "chainOfTrust": false,
		},
		SupersederUrl: "u",
		Defaulted: []string{
			"payload.log",
			"payload.capabilities.disableSeccomp",
			"payload.features.allowPtrace",
			"payload.features.artifacts",
			"payload.features.chainOfTrust",
			"payload.features.dind",
			"payload.features.dockerSave",
			"payload.features.interactive",
			"payload.features.localLiveLog",
		},
	}
	if diff := cmp.Diff(want, p); diff != "" {
		t.Errorf("payload (-want +got):\n%s", diff)
	}
}

func TestValidateMinimalPayload(t *testing.T) {
	v := newTestValidator(t)
	p, probs := v.Validate([]byte(`{"image":"ubuntu:24.04","maxRunTime":30}`))
	if probs != nil {
		t.Fatalf("unexpected problems: %v", probs)
	}
	want := &Payload{
		Image:      Image{Type: ImageTypeDockerImage, Name: "ubuntu:24.04", Shorthand: true},
		Command:    []string{},
		MaxRunTime: 30,
		Log:        "public/logs/live.log",
		Defaulted:  []string{"payload.command", "payload.log"},
	}
	if diff := cmp.Diff(want, p); diff != "" {
		t.Errorf("payload (-want +got):\n%s", diff)
	}
	// Without a features object no feature is present: absent means
	// "use the worker's default".
	if _, ok := p.Features["taskclusterProxy"]; ok {
		t.Error("features must stay absent when the payload has none")
	}
}

func TestImageJSONRoundTrip(t *testing.T) {
	for _, in := range []string{
		`"ubuntu:24.04"`,
		`{"type":"docker-image","name":"ubuntu:24.04"}`,
		`{"type":"indexed-image","namespace":"a.b","path":"public/i.tar"}`,
		`{"type":"task-image","taskId":"T","path":"public/i.tar"}`,
	} {
		var img Image
		if err := json.Unmarshal([]byte(in), &img); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		out, err := json.Marshal(img)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if string(out) != in {
			t.Errorf("round trip of %s gave %s", in, out)
		}
	}
	var img Image
	if err := json.Unmarshal([]byte(`5`), &img); err == nil {
		t.Error("decoding a number as an image should fail")
	}
}

func TestArtifactLeapSecond(t *testing.T) {
	v := newTestValidator(t)
	p, probs := v.Validate([]byte(`{"image":"x","maxRunTime":1,"artifacts":{"a":{"type":"file","path":"/a","expires":"2016-12-31t23:59:60z"}}}`))
	if probs != nil {
		t.Fatalf("unexpected problems: %v", probs)
	}
	want := time.Date(2017, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := *p.Artifacts["a"].Expires; !got.Equal(want) {
		t.Errorf("expires = %v, want %v", got, want)
	}
}

func TestCheckArtifactExpiry(t *testing.T) {
	taskExpires := time.Date(2026, 11, 21, 5, 0, 0, 0, time.UTC)
	later := time.Date(2026, 11, 22, 5, 0, 0, 0, time.UTC)
	laterSubMilli := taskExpires.Add(500 * time.Microsecond)
	earlier := taskExpires.Add(-time.Hour)
	same := taskExpires.In(time.FixedZone("X", 3600))
	offset := time.Date(2026, 11, 22, 7, 30, 0, 123456789, time.FixedZone("Y", 2*3600))
	p := &Payload{Artifacts: map[string]Artifact{
		"public/z":        {Type: "file", Path: "/z", Expires: &later},
		"public/a":        {Type: "file", Path: "/a", Expires: &offset},
		"public/none":     {Type: "file", Path: "/n"},
		"public/earlier":  {Type: "file", Path: "/e", Expires: &earlier},
		"public/same":     {Type: "file", Path: "/s", Expires: &same},
		"public/sub-ms":   {Type: "file", Path: "/m", Expires: &laterSubMilli},
		"public/z-second": {Type: "directory", Path: "/z2", Expires: &later},
	}}
	got := CheckArtifactExpiry(p, taskExpires)
	want := []Problem{
		{
			Path:    `payload.artifacts["public/a"].expires`,
			Message: "Artifact expiration for 'public/a' must not be greater than task expiration. Artifact expiration is '2026-11-22T05:30:00.123Z' but task expiration is '2026-11-21T05:00:00.000Z'",
		},
		{
			Path:    `payload.artifacts["public/z"].expires`,
			Message: "Artifact expiration for 'public/z' must not be greater than task expiration. Artifact expiration is '2026-11-22T05:00:00.000Z' but task expiration is '2026-11-21T05:00:00.000Z'",
		},
		{
			Path:    `payload.artifacts["public/z-second"].expires`,
			Message: "Artifact expiration for 'public/z-second' must not be greater than task expiration. Artifact expiration is '2026-11-22T05:00:00.000Z' but task expiration is '2026-11-21T05:00:00.000Z'",
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	if got := CheckArtifactExpiry(nil, taskExpires); got != nil {
		t.Errorf("nil payload gave %v", got)
	}
}

func TestCheckArtifactExpiryAfterValidate(t *testing.T) {
	v := newTestValidator(t)
	p, probs := v.Validate([]byte(`{"image":"x","maxRunTime":1,"artifacts":{"public/x":{"type":"file","path":"/x","expires":"2026-11-22T05:00:00Z"}}}`))
	if probs != nil {
		t.Fatal(probs)
	}
	got := CheckArtifactExpiry(p, time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC))
	want := "payload.artifacts[\"public/x\"].expires: Artifact expiration for 'public/x' must not be greater than task expiration. Artifact expiration is '2026-11-22T05:00:00.000Z' but task expiration is '2026-11-21T00:00:00.000Z'"
	if len(got) != 1 || got[0].String() != want {
		t.Errorf("got %v, want [%s]", got, want)
	}
}

func TestSchemaJSON(t *testing.T) {
	v := newTestValidator(t)
	b := v.SchemaJSON()
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("SchemaJSON is not JSON: %v", err)
	}
	if doc["$id"] != "/schemas/docker-worker/v1/payload.json#" {
		t.Errorf("$id = %v", doc["$id"])
	}
	b[0] = 'X' // callers get a copy
	if v.SchemaJSON()[0] != '{' {
		t.Error("SchemaJSON returned shared bytes")
	}
}

func TestValidateConcurrently(t *testing.T) {
	v := newTestValidator(t)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, tc := range payloadCases {
				if _, probs := v.Validate([]byte(tc.json)); (len(probs) == 0) != tc.valid {
					t.Errorf("%s: problems %v", tc.name, probs)
				}
			}
		}()
	}
	wg.Wait()
}

func TestProblemString(t *testing.T) {
	p := Problem{Path: "payload.maxRunTime", Message: "must be integer"}
	if got := p.String(); got != "payload.maxRunTime: must be integer" {
		t.Errorf("String() = %q", got)
	}
}
