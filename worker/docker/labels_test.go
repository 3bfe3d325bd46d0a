package docker_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
	"go.dockerworker.dev/docker-worker/worker/slugid"
)

func TestContainersLabelled(t *testing.T) {
	t.Parallel()
	c := dockertest.Require(t)
	task := slugid.Nice()
	id := create(t, c, docker.ContainerSpec{Cmd: []string{"true"},
		Labels: map[string]string{"dev.dockerworker.test-task": task, "dev.dockerworker.test-run": "0"}})
	other := create(t, c, docker.ContainerSpec{Cmd: []string{"true"},
		Labels: map[string]string{"dev.dockerworker.test-task": task, "dev.dockerworker.test-run": "1"}})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   []string
	}{
		{"every label", map[string]string{"dev.dockerworker.test-task": task, "dev.dockerworker.test-run": "0"}, []string{id}},
		{"one label", map[string]string{"dev.dockerworker.test-task": task}, []string{id, other}},
		{"no match", map[string]string{"dev.dockerworker.test-task": task, "dev.dockerworker.test-run": "2"}, nil},
		{"no labels", nil, nil},
	} {
		got, err := c.ContainersLabelled(ctx, tc.labels)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		want := slices.Clone(tc.want)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, want)
		}
	}
	if err := c.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.ContainersLabelled(ctx, map[string]string{"dev.dockerworker.test-task": task, "dev.dockerworker.test-run": "0"}); len(got) != 0 {
		t.Errorf("removed container listed: %v", got)
	}
}
