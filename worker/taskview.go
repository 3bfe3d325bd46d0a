package worker

import (
	"encoding/json"
	"io"
	"log/slog"
	"slices"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/schemas"
)

// taskView is what a feature sees of the run (features.Task).
type taskView struct {
	r      *run
	logger *slog.Logger
}

var _ features.Task = (*taskView)(nil)

func (t *taskView) TaskID() string                { return t.r.taskID }
func (t *taskView) RunID() int                    { return t.r.runID }
func (t *taskView) Definition() json.RawMessage   { return t.r.def.Raw }
func (t *taskView) Scopes() []string              { return slices.Clone(t.r.def.Scopes) }
func (t *taskView) Payload() *schemas.Payload     { return t.r.payload }
func (t *taskView) Expires() time.Time            { return t.r.def.Expires }
func (t *taskView) Deadline() time.Time           { return t.r.def.Deadline }
func (t *taskView) Logger() *slog.Logger          { return t.logger }
func (t *taskView) Log() io.Writer                { return t.r.log }
func (t *taskView) Artifacts() features.Publisher { return publisher{t.r} }
func (t *taskView) Resources() *features.Resources {
	return &t.r.res
}

func (t *taskView) Credentials() features.Credentials {
	t.r.mu.Lock()
	defer t.r.mu.Unlock()
	c := t.r.creds
	return features.Credentials{ClientID: c.ClientID, AccessToken: c.AccessToken, Certificate: c.Certificate}
}

func (t *taskView) Worker() features.WorkerInfo {
	c := t.r.w.cfg
	return features.WorkerInfo{
		RootURL:       c.RootURL,
		ProvisionerID: c.ProvisionerID,
		WorkerType:    c.WorkerType,
		WorkerGroup:   c.WorkerGroup,
		WorkerID:      c.WorkerID,
		PublicIP:      c.PublicIP,
		PrivateIP:     c.PrivateIP,
		InstanceID:    c.InstanceID,
		InstanceType:  c.InstanceType,
		Region:        c.Region,
		Hostname:      c.Host,

		ContainerLabels: t.r.w.ownLabels(),
	}
}
