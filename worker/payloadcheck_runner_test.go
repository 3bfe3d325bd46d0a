package worker_test

import (
	"strings"
	"testing"
	"testing/synctest"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/schemas"
	"go.dockerworker.dev/docker-worker/worker"
)

// refusingFeature is a payload feature that refuses every artifact named
// "refused" the way a features.PayloadChecker does.
type refusingFeature struct{}

func (refusingFeature) Name() string                                        { return "refuser" }
func (refusingFeature) NewTask(features.Task) (features.TaskFeature, error) { return nil, nil }
func (refusingFeature) CheckPayload(p *schemas.Payload) []schemas.Problem {
	if _, ok := p.Artifacts["refused"]; ok {
		return []schemas.Problem{{Path: `payload.artifacts.refused`, Message: "refused by the feature"}}
	}
	return nil
}

// Payloads the schema accepts but no run can use resolve
// exception/malformed-payload before anything is pulled or created, with
// every problem in the task log under the schema errors' heading.
func TestUnrunnablePayloadsAreMalformed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload map[string]any
		want    []string
	}{
		{
			name:    "image reference, string form",
			payload: map[string]any{"image": "Busybox:latest", "command": []string{"true"}, "maxRunTime": 600},
			want:    []string{`payload.image: invalid image reference "Busybox:latest": invalid reference format: repository name (library/Busybox) must be lowercase`},
		},
		{
			name: "image reference, object form, and an artifact image path",
			payload: map[string]any{"image": map[string]any{"type": "task-image", "taskId": "dSlITZ4yQgmvxxAi4A8fHQ", "path": "public/\u00efmage.tar"},
				"command": []string{"true"}, "maxRunTime": 600},
			want: []string{`payload.image.path: bad artifact name: "ï" at byte 7 is not printable ASCII`},
		},
		{
			name: "NUL bytes in env and command, an empty log name and a feature's refusal",
			payload: map[string]any{"image": testImage, "command": []string{"echo", "a\x00b"}, "maxRunTime": 600,
				"env":       map[string]string{"GOOD": "x", "BAD": "1\x002", "": "empty"},
				"log":       "",
				"artifacts": map[string]any{"refused": map[string]any{"type": "file", "path": "/x"}}},
			want: []string{
				`payload.env[""]: an environment variable name must not be empty`,
				`payload.env.BAD: the value "1\x002" must not contain a NUL byte`,
				`payload.command[1]: "a\x00b" must not contain a NUL byte`,
				`payload.log: bad artifact name: it is empty`,
				`payload.artifacts.refused: refused by the feature`,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := start(t, setup{extra: []features.Feature{refusingFeature{}}})
				taskID := e.createTask(tc.payload)
				st := e.waitRun(taskID, 0)
				e.shutdown()
				if r := st.Runs[0]; r.State != "exception" || r.ReasonResolved != "malformed-payload" {
					t.Errorf("run 0 is %s/%s, want exception/malformed-payload", r.State, r.ReasonResolved)
				}
				log, ok := e.taskLog(taskID, 0)
				if !ok {
					t.Fatal("no task log was uploaded")
				}
				for _, want := range append([]string{worker.InvalidHeading}, tc.want...) {
					if !strings.Contains(log, want) {
						t.Errorf("task log lacks %q:\n%s", want, log)
					}
				}
				if got := e.docker.Pulls(); len(got) != 0 {
					t.Errorf("pulled %v for a malformed payload", got)
				}
				if got := e.docker.Containers(); len(got) != 0 {
					t.Errorf("created %d containers for a malformed payload", len(got))
				}
			})
		})
	}
}
