package artifacts

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"go.dockerworker.dev/docker-worker/schemas"
)

// validPayload returns doc decoded by the schema validator, which must
// accept it: these are the payloads the schema lets through.
func validPayload(t *testing.T, doc string) *schemas.Payload {
	t.Helper()
	v, err := schemas.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	p, problems := v.Validate([]byte(doc))
	if len(problems) > 0 {
		t.Fatalf("the schema refuses %s: %v", doc, problems)
	}
	return p
}

func TestCheckPayload(t *testing.T) {
	const head = `{"image": "busybox", "command": ["true"], "maxRunTime": 60, "artifacts": `
	for _, tc := range []struct {
		name      string
		artifacts string
		want      []string
	}{
		{"good names and paths", `{"public/a.txt": {"type": "file", "path": "/a.txt"}, "private/d/": {"type": "directory", "path": "rel/dir"}}`, nil},
		{"empty name", `{"": {"type": "file", "path": "/a.txt"}}`,
			[]string{`payload.artifacts[""]: bad artifact name: it is empty`}},
		{"non-ASCII name", `{"public/caf\u00e9.txt": {"type": "file", "path": "/a.txt"}}`,
			[]string{`payload.artifacts["public/café.txt"]: bad artifact name: "é" at byte 10 is not printable ASCII (only 0x20 to 0x7e are allowed)`}},
		{"NUL in name", `{"public/a\u0000": {"type": "file", "path": "/a.txt"}}`,
			[]string{`payload.artifacts["public/a\x00"]: bad artifact name: "\x00" at byte 8 is not printable ASCII (only 0x20 to 0x7e are allowed)`}},
		{"NUL in path", `{"public/a": {"type": "file", "path": "/a\u0000b"}}`,
			[]string{`payload.artifacts["public/a"].path: the path "/a\x00b" must not contain a NUL byte`}},
		{"empty path", `{"public/a": {"type": "directory", "path": ""}}`,
			[]string{`payload.artifacts["public/a"].path: the path must not be empty`}},
		{"every problem, sorted by name", `{"z\n": {"type": "file", "path": "\u0000"}, "a": {"type": "file", "path": ""}, "ok": {"type": "file", "path": "/ok"}}`,
			[]string{
				`payload.artifacts.a.path: the path must not be empty`,
				`payload.artifacts["z\n"]: bad artifact name: "\n" at byte 1 is not printable ASCII (only 0x20 to 0x7e are allowed)`,
				`payload.artifacts["z\n"].path: the path "\x00" must not contain a NUL byte`,
			}},
		{"checked when the payload turns the feature off", `{"": {"type": "file", "path": "/a"}}, "features": {"artifacts": false}`,
			[]string{`payload.artifacts[""]: bad artifact name: it is empty`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := validPayload(t, head+tc.artifacts+`}`)
			var got []string
			for _, pr := range New(Config{}).CheckPayload(p) {
				got = append(got, pr.String())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}
