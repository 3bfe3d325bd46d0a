package worker

import (
	"context"
	"fmt"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// publisher creates artifacts of a run with its current credentials.
type publisher struct{ r *run }

var _ features.Publisher = publisher{}

func (p publisher) create(ctx context.Context, name string, req tc.ArtifactRequest) (*tc.ArtifactResponse, error) {
	resp, err := p.r.queue().CreateArtifact(ctx, p.r.taskID, p.r.runID, name, req)
	if err != nil {
		return nil, fmt.Errorf("create artifact %s: %w", name, err)
	}
	return resp, nil
}

func (p publisher) Upload(ctx context.Context, a features.Upload) error {
	if p.r.w.cfg.Artifacts.StorageType == config.StorageObject {
		if err := p.uploadObject(ctx, a); err != nil {
			return err
		}
	} else if err := p.uploadS3(ctx, a); err != nil {
		return err
	}
	sum := a.SHA256
	if a.Digest != nil {
		sum = a.Digest()
	}
	if sum != "" {
		p.r.res.RecordArtifact(a.Name, sum)
	}
	return nil
}

// uploadS3 creates an s3 artifact and PUTs the body to the URL the queue
// returns.
func (p publisher) uploadS3(ctx context.Context, a features.Upload) error {
	resp, err := p.create(ctx, a.Name, tc.S3Artifact(a.Expires, a.ContentType))
	if err != nil {
		return err
	}
	if err := p.r.queue().PutArtifact(ctx, resp.PutURL, a.Open, a.Size, a.ContentType, a.ContentEncoding); err != nil {
		return fmt.Errorf("upload artifact %s: %w", a.Name, err)
	}
	return nil
}

func (p publisher) Reference(ctx context.Context, name, url, contentType string, expires time.Time) error {
	_, err := p.create(ctx, name, tc.ReferenceArtifact(expires, url, contentType))
	return err
}

func (p publisher) Link(ctx context.Context, name, target string, expires time.Time) error {
	_, err := p.create(ctx, name, tc.LinkArtifact(expires, target))
	return err
}

func (p publisher) Error(ctx context.Context, name, reason, message string, expires time.Time) error {
	_, err := p.create(ctx, name, tc.ErrorArtifact(expires, reason, message))
	return err
}
