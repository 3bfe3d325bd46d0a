package e2e

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"go.dockerworker.dev/docker-worker/worker/tc"
)

// Payloads the schema accepts but no run can use (an image reference
// Docker cannot parse, an artifact name the queue cannot store, NUL bytes
// in the environment or the command) resolve exception/malformed-payload
// with every problem in live_backing.log, and no container is created for
// them.
func TestUnrunnablePayloadIsMalformed(t *testing.T) {
	q := startQueue(t, nil)
	cfg := q.workerConfig("malformed")
	startWorker(t, q, cfg)
	since := time.Now()
	for _, c := range []struct {
		name    string
		payload map[string]any
		wants   []string
	}{
		{"image reference", map[string]any{"image": "Docker-Worker-Test/BusyBox", "command": []string{"true"}, "maxRunTime": 60},
			[]string{`payload.image: invalid image reference "Docker-Worker-Test/BusyBox": invalid reference format: repository name (BusyBox) must be lowercase`}},
		{"image object form", map[string]any{"image": map[string]any{"type": "docker-image", "name": "busybox:"}, "command": []string{"true"}, "maxRunTime": 60},
			[]string{`payload.image.name: invalid image reference "busybox:": invalid reference format`}},
		{"task image artifact name", map[string]any{"image": map[string]any{"type": "task-image", "taskId": "dSlITZ4yQgmvxxAi4A8fHQ", "path": "public/image\n.tar"},
			"command": []string{"true"}, "maxRunTime": 60},
			[]string{`payload.image.path: bad artifact name: "\n" at byte 12 is not printable ASCII`}},
		{"artifact names and paths", map[string]any{"image": image, "command": []string{"true"}, "maxRunTime": 60,
			"artifacts": map[string]any{
				"":                        map[string]any{"type": "file", "path": "/etc/hostname"},
				"public/r\u00e9sum\u00e9": map[string]any{"type": "file", "path": "/etc/hostname"},
				"public/nul":              map[string]any{"type": "file", "path": "/etc/host\x00name"},
			}},
			[]string{
				`payload.artifacts[""]: bad artifact name: it is empty`,
				`payload.artifacts["public/résumé"]: bad artifact name: "é" at byte 8 is not printable ASCII`,
				`payload.artifacts["public/nul"].path: the path "/etc/host\x00name" must not contain a NUL byte`,
			}},
		{"env and command", map[string]any{"image": image, "command": []string{"/bin/sh", "-c", "echo \x00"}, "maxRunTime": 60,
			"env": map[string]string{"A\x00": "x", "B": "y\x00"}},
			[]string{
				`payload.env["A\x00"]: the environment variable name "A\x00" must not contain a NUL byte`,
				`payload.env.B: the value "y\x00" must not contain a NUL byte`,
				`payload.command[2]: "echo \x00" must not contain a NUL byte`,
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := q.create(t, newTask(cfg, c.payload))
			s := q.waitRun(t, id, 0, time.Minute)
			wantState(t, s, 0, tc.StateException, "malformed-payload")
			log := q.logOf(t, id, 0, "public/logs/live_backing.log")
			mustContain(t, log, append([]string{"`task.payload` format is invalid json schema errors:"}, c.wants...)...)
			if n := containerEvents(t, id, since); n != 0 {
				t.Errorf("%d Docker container events for task %s, want none", n, id)
			}
		})
	}
	// The control: a task that runs has events, so the count above can
	// see containers.
	id := q.create(t, newTask(cfg, shell("true", 60)))
	wantState(t, q.waitRun(t, id, 0, time.Minute), 0, tc.StateCompleted, "completed")
	if n := containerEvents(t, id, since); n == 0 {
		t.Errorf("no Docker container events for task %s, which ran", id)
	}
}

// containerEvents counts the Docker daemon's container events since
// since for containers labelled with taskID.
func containerEvents(t *testing.T, taskID string, since time.Time) int {
	t.Helper()
	api, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer api.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	res := api.Events(ctx, client.EventsListOptions{
		Since:   strconv.FormatInt(since.Unix()-1, 10),
		Until:   strconv.FormatInt(time.Now().Unix()+1, 10),
		Filters: client.Filters{}.Add("type", "container").Add("label", "dev.dockerworker.task-id="+taskID),
	})
	n := 0
	for {
		select {
		case _, ok := <-res.Messages:
			if !ok {
				return n
			}
			n++
		case err := <-res.Err:
			if err != nil && ctx.Err() == nil && err.Error() != "EOF" {
				t.Fatalf("docker events: %v", err)
			}
			return n
		}
	}
}
