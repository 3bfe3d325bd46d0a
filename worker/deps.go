package worker

import (
	"context"
	"io"

	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// StatusQueue reads a task's status (polled while a task runs, to notice
// cancellation early).
type StatusQueue interface {
	Status(ctx context.Context, taskID string) (*tc.TaskStatusResponse, error)
}

// Queue is what the claim loop needs from the queue, with the worker's own
// credentials.
type Queue interface {
	StatusQueue
	ClaimWork(ctx context.Context, taskQueueID string, req tc.ClaimWorkRequest) (*tc.ClaimWorkResponse, error)
}

// RunQueue is what a task run needs from the queue; it is always built from
// the run's current temporary credentials.
type RunQueue interface {
	ReclaimTask(ctx context.Context, taskID string, runID int) (*tc.TaskReclaimResponse, error)
	ReportCompleted(ctx context.Context, taskID string, runID int) (*tc.TaskStatusResponse, error)
	ReportFailed(ctx context.Context, taskID string, runID int) (*tc.TaskStatusResponse, error)
	ReportException(ctx context.Context, taskID string, runID int, reason string) (*tc.TaskStatusResponse, error)
	CreateArtifact(ctx context.Context, taskID string, runID int, name string, req tc.ArtifactRequest) (*tc.ArtifactResponse, error)
	PutArtifact(ctx context.Context, putURL string, open func(context.Context) (io.ReadCloser, error), size int64, contentType, contentEncoding string) error
	UploadObjectArtifact(ctx context.Context, taskID string, runID int, u tc.ObjectUpload) error
}

// Docker is the part of the Docker Engine API the runner uses. The task
// image is a feature's business (see features.ImageProvider).
type Docker interface {
	Create(ctx context.Context, spec docker.ContainerSpec) (string, error)
	Attach(ctx context.Context, id string) (io.ReadCloser, error)
	Start(ctx context.Context, id string) error
	// Wait returns the exit code once the container stopped.
	Wait(ctx context.Context, id string) (int, error)
	Kill(ctx context.Context, id string) error
	Remove(ctx context.Context, id string) error
	CopyFrom(ctx context.Context, id, path string) (io.ReadCloser, bool, error)
	// ListContainers lists the containers (stopped ones included) that
	// carry all of labels.
	ListContainers(ctx context.Context, labels map[string]string) ([]docker.ContainerState, error)
}
