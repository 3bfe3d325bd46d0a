// Package featuretest is a fake task host for features' unit tests: a
// features.Task whose publisher records every artifact in memory. Tests of
// the real runner path live in test/e2e.
package featuretest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/schemas"
)

// Artifact is an artifact recorded by [Publisher].
type Artifact struct {
	Kind            string // "s3", "reference", "link" or "error"
	Name            string
	ContentType     string
	ContentEncoding string
	Expires         time.Time
	Body            []byte // s3: the uploaded bytes, as sent
	SHA256          string
	URL             string // reference
	Target          string // link
	Reason, Message string // error
}

// Publisher records artifacts. Set Fail to make every call fail.
type Publisher struct {
	mu        sync.Mutex
	Artifacts map[string]Artifact
	Fail      error
	hashes    map[string]string
}

var _ features.Publisher = (*Publisher)(nil)

func (p *Publisher) put(a Artifact) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.Fail != nil {
		return p.Fail
	}
	if p.Artifacts == nil {
		p.Artifacts = map[string]Artifact{}
	}
	p.Artifacts[a.Name] = a
	if a.SHA256 != "" {
		if p.hashes == nil {
			p.hashes = map[string]string{}
		}
		p.hashes[a.Name] = a.SHA256
	}
	return nil
}

// Upload implements features.Publisher; it reads the whole body and checks Size.
func (p *Publisher) Upload(_ context.Context, u features.Upload) error {
	rc, err := u.Open()
	if err != nil {
		return err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	if int64(len(b)) != u.Size {
		return errors.New("featuretest: body length differs from Upload.Size")
	}
	return p.put(Artifact{Kind: "s3", Name: u.Name, ContentType: u.ContentType, ContentEncoding: u.ContentEncoding,
		Expires: u.Expires, Body: b, SHA256: u.SHA256})
}

// Reference implements features.Publisher.
func (p *Publisher) Reference(_ context.Context, name, url, contentType string, expires time.Time) error {
	return p.put(Artifact{Kind: "reference", Name: name, URL: url, ContentType: contentType, Expires: expires})
}

// Link implements features.Publisher.
func (p *Publisher) Link(_ context.Context, name, target string, expires time.Time) error {
	return p.put(Artifact{Kind: "link", Name: name, Target: target, Expires: expires})
}

// Error implements features.Publisher.
func (p *Publisher) Error(_ context.Context, name, reason, message string, expires time.Time) error {
	return p.put(Artifact{Kind: "error", Name: name, Reason: reason, Message: message, Expires: expires})
}

// Get returns the artifact called name.
func (p *Publisher) Get(name string) (Artifact, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	a, ok := p.Artifacts[name]
	return a, ok
}

// Task is a fake features.Task. Zero values are usable; set what a test needs.
type Task struct {
	ID     string
	Run    int
	Def    json.RawMessage
	Pay    *schemas.Payload
	Expiry time.Time
	Image  string
	Info   features.WorkerInfo
	Pub    Publisher
	LogBuf bytes.Buffer
	logMu  sync.Mutex
	Slog   *slog.Logger
}

var _ features.Task = (*Task)(nil)

func (t *Task) TaskID() string              { return t.ID }
func (t *Task) RunID() int                  { return t.Run }
func (t *Task) Definition() json.RawMessage { return t.Def }
func (t *Task) Payload() *schemas.Payload   { return t.Pay }
func (t *Task) Expires() time.Time          { return t.Expiry }
func (t *Task) ImageID() string             { return t.Image }
func (t *Task) Worker() features.WorkerInfo { return t.Info }
func (t *Task) Artifacts() features.Publisher {
	return &t.Pub
}

// Logger returns Slog, or a logger that discards.
func (t *Task) Logger() *slog.Logger {
	if t.Slog != nil {
		return t.Slog
	}
	return slog.New(slog.DiscardHandler)
}

// Log returns a writer into LogBuf.
func (t *Task) Log() io.Writer { return logWriter{t} }

// LogText returns what was written to Log.
func (t *Task) LogText() string {
	t.logMu.Lock()
	defer t.logMu.Unlock()
	return t.LogBuf.String()
}

// ArtifactHashes implements features.Task.
func (t *Task) ArtifactHashes() map[string]string {
	t.Pub.mu.Lock()
	defer t.Pub.mu.Unlock()
	out := map[string]string{}
	for k, v := range t.Pub.hashes {
		out[k] = v
	}
	return out
}

type logWriter struct{ t *Task }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.logMu.Lock()
	defer w.t.logMu.Unlock()
	return w.t.LogBuf.Write(p)
}
