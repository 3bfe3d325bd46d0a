package wiring

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/status"
)

// withStatus adds the status endpoint (status.listen) to exts; without
// status.listen it returns exts as they are. The endpoint closes with the
// worker.
func (w *Worker) withStatus(ctx context.Context, cfg *config.Config, opts Options, dc *docker.Client, exts []features.Extension) ([]features.Extension, error) {
	if cfg.Status.Listen == "" {
		return exts, nil
	}
	volume := cfg.DockerVolume
	if volume == "" {
		root, err := dc.DataRoot(ctx)
		if err != nil {
			return nil, fmt.Errorf("status endpoint: dockerVolume: %w", err)
		}
		volume = root
	}
	creds := opts.Credentials
	s, err := status.New(status.Config{
		Listen:       cfg.Status.Listen,
		Version:      opts.Version,
		WorkerPoolID: cfg.ProvisionerID + "/" + cfg.WorkerType,
		WorkerGroup:  cfg.WorkerGroup,
		WorkerID:     cfg.WorkerID,
		Capacity:     cfg.Capacity,
		Volume:       volume,
		PingQueue: func(ctx context.Context) error {
			return creds.Client().Request(ctx, "queue", http.MethodGet, "/ping", nil, nil, nil)
		},
		PingDocker: dc.Ping,
		TaskImage: func(ctx context.Context, taskID string) (string, error) {
			def, err := creds.Client().Task(ctx, taskID)
			if err != nil {
				return "", err
			}
			return payloadImage(def.Payload), nil
		},
		Logger: opts.Logger.With("component", "status"),
	})
	if err != nil {
		return nil, err
	}
	w.closers = append(w.closers, s.Close)
	return append(exts, s), nil
}

// payloadImage names a payload's image for people: a registry image as
// it is, an indexed image as index:<namespace>/<path>, a task image as
// task:<taskId>/<path>.
func payloadImage(payload json.RawMessage) string {
	var p struct {
		Image json.RawMessage `json:"image"`
	}
	if json.Unmarshal(payload, &p) != nil || len(p.Image) == 0 {
		return ""
	}
	var name string
	if json.Unmarshal(p.Image, &name) == nil {
		return name
	}
	var img struct {
		Type, Name, Namespace, Path, TaskID string
	}
	if json.Unmarshal(p.Image, &img) != nil {
		return ""
	}
	switch img.Type {
	case "indexed-image":
		return "index:" + img.Namespace + "/" + strings.TrimPrefix(img.Path, "/")
	case "task-image":
		return "task:" + img.TaskID + "/" + strings.TrimPrefix(img.Path, "/")
	}
	return img.Name
}
