package wiring

import (
	"context"
	"net/http"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/features/image"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// imageFeature builds the image feature for cfg.
func imageFeature(cfg *config.Config, dc image.Docker) *image.Feature {
	regs := make(map[string]image.RegistryCredentials, len(cfg.Registries))
	for k, c := range cfg.Registries {
		regs[k] = image.RegistryCredentials{Username: c.Username, Password: c.Password}
	}
	return image.New(image.Config{
		Docker:          dc,
		Queue:           newImageQueue(cfg.RootURL),
		Policy:          PullPolicy(cfg),
		Registries:      regs,
		DefaultRegistry: cfg.DockerConfig.DefaultRegistry,
	})
}

// imageQueue is the image feature's way to the queue and the index of a
// deployment, over worker/tc. Its client has no credentials of its own:
// each call signs with the run's, or not at all.
type imageQueue struct {
	anon *tc.Client
}

var _ image.Queue = imageQueue{}

// newImageQueue returns the image feature's queue for rootURL.
func newImageQueue(rootURL string) imageQueue {
	return imageQueue{anon: tc.New(tc.Config{RootURL: rootURL})}
}

func tcCredentials(c features.Credentials, scopes []string) tc.Credentials {
	return tc.Credentials{ClientID: c.ClientID, AccessToken: c.AccessToken, Certificate: c.Certificate, AuthorizedScopes: scopes}
}

// FindTask implements image.Queue with the index's findTask.
func (q imageQueue) FindTask(ctx context.Context, creds features.Credentials, scopes []string, namespace string) (string, error) {
	t, err := q.anon.WithCredentials(tcCredentials(creds, scopes)).FindTask(ctx, namespace)
	if err != nil {
		return "", err
	}
	return t.TaskID, nil
}

// OpenArtifact implements image.Queue with getLatestArtifact; 4xx answers
// other than 408 and 429 are final.
func (q imageQueue) OpenArtifact(ctx context.Context, creds *features.Credentials, taskID, name string) (*image.Download, error) {
	c := q.anon
	if creds != nil {
		c = c.WithCredentials(tcCredentials(*creds, nil))
	}
	b, err := c.Open(ctx, c.LatestArtifactURL(taskID, name))
	if err != nil {
		if s := tc.StatusCode(err); s >= 400 && s < 500 && s != http.StatusRequestTimeout && s != http.StatusTooManyRequests {
			return nil, image.Final(err)
		}
		return nil, err
	}
	return &image.Download{Body: b, ContentEncoding: b.ContentEncoding, Size: b.ContentLength}, nil
}
