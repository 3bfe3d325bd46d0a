package image

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"go.dockerworker.dev/docker-worker/schemas"
)

func TestCheckPayload(t *testing.T) {
	v, err := schemas.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	const taskID = "dSlITZ4yQgmvxxAi4A8fHQ"
	for _, tc := range []struct {
		name  string
		image string
		want  []string
	}{
		{"name", `"busybox"`, nil},
		{"name with tag, host and digest", `"127.0.0.1:5000/team/img:1.2@` + digest + `"`, nil},
		{"object form", `{"type": "docker-image", "name": "docker.io/library/ubuntu:24.04"}`, nil},
		{"task image", `{"type": "task-image", "taskId": "` + taskID + `", "path": "public/image.tar.zst"}`, nil},
		{"indexed image", `{"type": "indexed-image", "namespace": "garbage.docker-worker-tests.docker-images", "path": "private/image.tar"}`, nil},

		{"upper case", `"Busybox"`, []string{
			`payload.image: invalid image reference "Busybox": invalid reference format: repository name (library/Busybox) must be lowercase`}},
		{"empty", `""`, []string{`payload.image: invalid image reference "": invalid reference format`}},
		{"NUL", `"busybox\u0000"`, []string{`payload.image: invalid image reference "busybox\x00": invalid reference format`}},
		{"space, object form", `{"type": "docker-image", "name": "busy box"}`, []string{
			`payload.image.name: invalid image reference "busy box": invalid reference format`}},
		{"bad digest", `"busybox@sha256:abc"`, []string{`payload.image: invalid image reference "busybox@sha256:abc": invalid reference format`}},
		{"image ID", `"` + digest[len("sha256:"):] + `"`, []string{
			`payload.image: invalid image reference "` + digest[len("sha256:"):] + `": invalid repository name (` + digest[len("sha256:"):] + `), cannot specify 64-byte hexadecimal strings`}},

		{"task image: bad task ID and empty path", `{"type": "task-image", "taskId": "../../x", "path": ""}`, []string{
			`payload.image.taskId: "../../x" is not a task ID (a 22-character slug id)`,
			`payload.image.path: bad artifact name: it is empty`}},
		{"task image: non-ASCII path", `{"type": "task-image", "taskId": "` + taskID + `", "path": "public/\u00efmage.tar"}`, []string{
			`payload.image.path: bad artifact name: "ï" at byte 7 is not printable ASCII (only 0x20 to 0x7e are allowed)`}},
		{"indexed image: NUL in path, empty namespace", `{"type": "indexed-image", "namespace": "", "path": "public/i\u0000.tar"}`, []string{
			`payload.image.namespace: "" is not an index namespace: it must not be empty or hold control characters`,
			`payload.image.path: bad artifact name: "\x00" at byte 8 is not printable ASCII (only 0x20 to 0x7e are allowed)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, problems := v.Validate([]byte(`{"image": ` + tc.image + `, "maxRunTime": 60}`))
			if len(problems) > 0 {
				t.Fatalf("the schema refuses image %s: %v", tc.image, problems)
			}
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
