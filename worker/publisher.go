package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/taskerr"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// publisher creates artifacts of a run with its current credentials.
//
// Every queue or storage call is retried while the claim lasts (see
// untilWindowEnds): the run's credentials, which a reclaim renews, are
// valid until takenUntil. An upload that still fails because of the
// infrastructure (the queue or the storage unreachable, or answering 5xx)
// is marked worker-shutdown, an exception the queue retries: the task did
// nothing wrong. A failure the request itself causes (a 4xx answer: a bad
// name, an artifact too big, a conflicting artifact) stays unclassified,
// and the run fails, as in docker-worker.
type publisher struct{ r *run }

var _ features.Publisher = publisher{}

// call runs fn with the run's current queue client, retried within the
// claim's window as it is when the call starts (a window that followed
// reclaims would let a failing upload hold the run until its deadline).
func (p publisher) call(ctx context.Context, fn func(context.Context, RunQueue) error) error {
	return fn(tc.RetryUntil(ctx, p.r.claimWindow()), p.r.queue())
}

// infra marks err worker-shutdown when it is a failure of the
// infrastructure. An upload cut short because the task was aborted keeps
// its error: the abort's cause decides the resolution.
func infra(ctx context.Context, err error) error {
	if err == nil || errors.Is(ctx.Err(), context.Canceled) || !transient(err) {
		return err
	}
	return taskerr.WorkerShutdown(fmt.Errorf("%w (the queue or the artifact storage kept failing while the claim lasted)", err))
}

func (p publisher) create(ctx context.Context, name string, req tc.ArtifactRequest) (*tc.ArtifactResponse, error) {
	var resp *tc.ArtifactResponse
	err := p.call(ctx, func(ctx context.Context, q RunQueue) error {
		var err error
		resp, err = q.CreateArtifact(ctx, p.r.taskID, p.r.runID, name, req)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create artifact %s: %w", name, err)
	}
	return resp, nil
}

func (p publisher) Upload(ctx context.Context, a features.Upload) error {
	began := p.r.w.now()
	var err error
	if p.r.w.cfg.Artifacts.StorageType == config.StorageObject {
		err = p.uploadObject(ctx, a)
	} else {
		err = p.uploadS3(ctx, a)
	}
	p.r.w.hooks.emit(features.Event{Kind: features.ArtifactUploaded, Run: p.r.ref(), At: p.r.w.now(),
		Artifact: features.ArtifactUpload{Name: a.Name, Bytes: a.Size, Took: p.r.w.now().Sub(began), Failed: err != nil}})
	if err != nil {
		return infra(ctx, err)
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
	err = p.call(ctx, func(ctx context.Context, q RunQueue) error {
		return q.PutArtifact(ctx, resp.PutURL, a.Open, a.Size, a.ContentType, a.ContentEncoding)
	})
	if err != nil {
		return fmt.Errorf("upload artifact %s: %w", a.Name, err)
	}
	return nil
}

func (p publisher) Reference(ctx context.Context, name, url, contentType string, expires time.Time) error {
	_, err := p.create(ctx, name, tc.ReferenceArtifact(expires, url, contentType))
	return infra(ctx, err)
}

func (p publisher) Link(ctx context.Context, name, target string, expires time.Time) error {
	_, err := p.create(ctx, name, tc.LinkArtifact(expires, target))
	return infra(ctx, err)
}

func (p publisher) Error(ctx context.Context, name, reason, message string, expires time.Time) error {
	_, err := p.create(ctx, name, tc.ErrorArtifact(expires, reason, message))
	return infra(ctx, err)
}
