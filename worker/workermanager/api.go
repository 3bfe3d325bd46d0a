package workermanager

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"go.dockerworker.dev/docker-worker/worker/tc"
)

// service is worker-manager's name under <rootUrl>/api.
const service = "worker-manager"

// Identity is who the worker is to worker-manager, and the proof of it.
type Identity struct {
	ProviderID   string
	WorkerPoolID string
	WorkerGroup  string
	WorkerID     string
	// Proof is registerWorker's workerIdentityProof: {staticSecret} for
	// the static provider, {document, signature} for aws.
	Proof map[string]string
}

// Registration is what registerWorker or reregisterWorker returned.
type Registration struct {
	Credentials tc.Credentials
	Expires     time.Time
	// Secret is the one-time secret of the next reregisterWorker call.
	Secret string
	// WorkerConfig is the worker pool's workerConfig (registerWorker
	// only): a JSON object.
	WorkerConfig json.RawMessage
}

type credentialsJSON struct {
	ClientID    string `json:"clientId"`
	AccessToken string `json:"accessToken"`
	Certificate string `json:"certificate,omitempty"`
}

type registrationJSON struct {
	Credentials  credentialsJSON `json:"credentials"`
	Expires      string          `json:"expires"`
	Secret       string          `json:"secret"`
	WorkerConfig json.RawMessage `json:"workerConfig"`
}

func (r registrationJSON) registration() (*Registration, error) {
	exp, err := time.Parse(time.RFC3339Nano, r.Expires)
	if err != nil {
		return nil, fmt.Errorf("expires %q: %w", r.Expires, err)
	}
	if r.Credentials.ClientID == "" || r.Credentials.AccessToken == "" {
		return nil, fmt.Errorf("the answer has no credentials")
	}
	return &Registration{
		Credentials: tc.Credentials{
			ClientID:    r.Credentials.ClientID,
			AccessToken: r.Credentials.AccessToken,
			Certificate: r.Credentials.Certificate,
		},
		Expires:      exp,
		Secret:       r.Secret,
		WorkerConfig: r.WorkerConfig,
	}, nil
}

// Register calls registerWorker (which needs no credentials: c may have
// none) with id.
func Register(ctx context.Context, c *tc.Client, id Identity, systemBootTime time.Time) (*Registration, error) {
	in := map[string]any{
		"workerPoolId":        id.WorkerPoolID,
		"providerId":          id.ProviderID,
		"workerGroup":         id.WorkerGroup,
		"workerId":            id.WorkerID,
		"workerIdentityProof": id.Proof,
	}
	if !systemBootTime.IsZero() {
		in["systemBootTime"] = systemBootTime.UTC().Format(time.RFC3339)
	}
	var out registrationJSON
	if err := c.Request(ctx, service, http.MethodPost, "/worker/register", nil, in, &out); err != nil {
		return nil, fmt.Errorf("registerWorker %s/%s/%s: %w", id.WorkerPoolID, id.WorkerGroup, id.WorkerID, err)
	}
	r, err := out.registration()
	if err != nil {
		return nil, fmt.Errorf("registerWorker %s/%s/%s: %w", id.WorkerPoolID, id.WorkerGroup, id.WorkerID, err)
	}
	if len(r.WorkerConfig) == 0 {
		r.WorkerConfig = json.RawMessage("{}")
	}
	return r, nil
}

// Reregister calls reregisterWorker with the worker's current credentials
// (c) and the secret of the last registration.
func Reregister(ctx context.Context, c *tc.Client, id Identity, secret string) (*Registration, error) {
	in := map[string]string{
		"workerPoolId": id.WorkerPoolID,
		"workerGroup":  id.WorkerGroup,
		"workerId":     id.WorkerID,
		"secret":       secret,
	}
	var out registrationJSON
	if err := c.Request(ctx, service, http.MethodPost, "/worker/reregister", nil, in, &out); err != nil {
		return nil, fmt.Errorf("reregisterWorker %s/%s/%s: %w", id.WorkerPoolID, id.WorkerGroup, id.WorkerID, err)
	}
	r, err := out.registration()
	if err != nil {
		return nil, fmt.Errorf("reregisterWorker %s/%s/%s: %w", id.WorkerPoolID, id.WorkerGroup, id.WorkerID, err)
	}
	return r, nil
}

// workerPath is /workers/<workerPoolId>/<workerGroup>/<workerId>.
func workerPath(id Identity) string {
	return "/workers/" + tc.PathEscape(id.WorkerPoolID) + "/" + tc.PathEscape(id.WorkerGroup) + "/" + tc.PathEscape(id.WorkerID)
}

// Remove calls removeWorker for id with the worker's credentials.
func Remove(ctx context.Context, c *tc.Client, id Identity) error {
	if err := c.Request(ctx, service, http.MethodDelete, workerPath(id), nil, nil, nil); err != nil {
		return fmt.Errorf("removeWorker %s/%s/%s: %w", id.WorkerPoolID, id.WorkerGroup, id.WorkerID, err)
	}
	return nil
}

// ShouldTerminate calls shouldWorkerTerminate for id with the worker's
// credentials.
func ShouldTerminate(ctx context.Context, c *tc.Client, id Identity) (terminate bool, reason string, err error) {
	var out struct {
		Terminate bool   `json:"terminate"`
		Reason    string `json:"reason"`
	}
	if err := c.Request(ctx, service, http.MethodGet, workerPath(id)+"/should-terminate", nil, nil, &out); err != nil {
		return false, "", fmt.Errorf("shouldWorkerTerminate %s/%s/%s: %w", id.WorkerPoolID, id.WorkerGroup, id.WorkerID, err)
	}
	return out.Terminate, out.Reason, nil
}
