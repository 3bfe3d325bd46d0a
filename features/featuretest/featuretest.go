// Package featuretest is a fake task host for features' unit tests: a
// features.Task whose publisher records every artifact in memory. Tests of
// the real runner path live in test/e2e.
package featuretest

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path"
	"sort"
	"strings"
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

// Publisher records artifacts. Set Fail to make every call fail, or
// FailUpload to make chosen uploads fail.
type Publisher struct {
	mu        sync.Mutex
	Artifacts map[string]Artifact
	Fail      error
	// FailUpload, when set, is asked before each Upload; an error fails it.
	FailUpload func(name string) error
	// Res, when set, records the hashes of uploads as the runner's
	// publisher does ([Task] sets it).
	Res *features.Resources
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
	if a.SHA256 != "" && p.Res != nil {
		p.Res.RecordArtifact(a.Name, a.SHA256)
	}
	return nil
}

// Upload implements features.Publisher; it reads the whole body and checks Size.
func (p *Publisher) Upload(ctx context.Context, u features.Upload) error {
	if p.FailUpload != nil {
		if err := p.FailUpload(u.Name); err != nil {
			return err
		}
	}
	rc, err := u.Open(ctx)
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
	sum := u.SHA256
	if u.Digest != nil {
		sum = u.Digest()
	}
	return p.put(Artifact{Kind: "s3", Name: u.Name, ContentType: u.ContentType, ContentEncoding: u.ContentEncoding,
		Expires: u.Expires, Body: b, SHA256: sum})
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

// Names returns the names of the recorded artifacts, sorted.
func (p *Publisher) Names() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.Artifacts))
	for n := range p.Artifacts {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
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
	// Dead is the task's deadline; Scope its scopes; Creds its credentials.
	Dead  time.Time
	Scope []string
	Creds features.Credentials
	// Res are the run's shared facts (set Res.SetImage to give an image).
	Res    features.Resources
	Info   features.WorkerInfo
	Pub    Publisher
	LogBuf bytes.Buffer
	logMu  sync.Mutex
	Slog   *slog.Logger
}

var _ features.Task = (*Task)(nil)

func (t *Task) TaskID() string                    { return t.ID }
func (t *Task) RunID() int                        { return t.Run }
func (t *Task) Definition() json.RawMessage       { return t.Def }
func (t *Task) Payload() *schemas.Payload         { return t.Pay }
func (t *Task) Expires() time.Time                { return t.Expiry }
func (t *Task) Deadline() time.Time               { return t.Dead }
func (t *Task) Scopes() []string                  { return t.Scope }
func (t *Task) Credentials() features.Credentials { return t.Creds }
func (t *Task) Resources() *features.Resources    { return &t.Res }
func (t *Task) Worker() features.WorkerInfo       { return t.Info }

// Artifacts returns Pub, recording upload hashes in Res.
func (t *Task) Artifacts() features.Publisher {
	t.Pub.mu.Lock()
	t.Pub.Res = &t.Res
	t.Pub.mu.Unlock()
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

// ArtifactHashes returns the hashes recorded in Res.
func (t *Task) ArtifactHashes() map[string]string { return t.Res.ArtifactHashes() }

type logWriter struct{ t *Task }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.logMu.Lock()
	defer w.t.logMu.Unlock()
	return w.t.LogBuf.Write(p)
}

// Container is a fake stopped container (features.ContainerFiles): its
// files are described in memory and CopyFrom answers as Docker's archive
// API does, with a tar whose root entry is named after the path's last
// element. Directories are implied by the files below them.
type Container struct {
	// WorkDir resolves relative paths ("/" when empty).
	WorkDir string
	// Files maps absolute paths to regular file contents.
	Files map[string]string
	// Dirs lists (possibly empty) directories.
	Dirs []string
	// Symlinks maps absolute paths to link targets.
	Symlinks map[string]string
	// Archives maps absolute paths to a raw tar stream returned as is
	// (hostile archives), with IsDir for the directory flag.
	Archives map[string][]byte
	IsDir    map[string]bool
}

var _ features.ContainerFiles = (*Container)(nil)

// CopyFrom implements features.ContainerFiles.
func (c *Container) CopyFrom(_ context.Context, p string) (io.ReadCloser, bool, error) {
	wd := c.WorkDir
	if wd == "" {
		wd = "/"
	}
	abs := path.Clean(p)
	if !path.IsAbs(abs) {
		abs = path.Join(wd, abs)
	}
	if raw, ok := c.Archives[abs]; ok {
		return io.NopCloser(bytes.NewReader(raw)), c.IsDir[abs], nil
	}
	base := path.Base(abs)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := func(h *tar.Header) {
		h.ModTime = time.Unix(1500000000, 0)
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		tw.WriteHeader(h) // writes to a bytes.Buffer cannot fail
	}
	isDir := false
	switch {
	case c.Symlinks[abs] != "":
		hdr(&tar.Header{Name: base, Typeflag: tar.TypeSymlink, Linkname: c.Symlinks[abs]})
	case c.hasFile(abs):
		body := c.Files[abs]
		hdr(&tar.Header{Name: base, Typeflag: tar.TypeReg, Size: int64(len(body))})
		io.WriteString(tw, body)
	case c.isDir(abs):
		isDir = true
		hdr(&tar.Header{Name: base + "/", Typeflag: tar.TypeDir, Mode: 0o755})
		var below []string
		for _, m := range []map[string]string{c.Files, c.Symlinks} {
			for f := range m {
				if strings.HasPrefix(f, abs+"/") {
					below = append(below, f)
				}
			}
		}
		for _, d := range c.Dirs {
			if strings.HasPrefix(d, abs+"/") {
				below = append(below, d)
			}
		}
		sort.Strings(below)
		seen := map[string]bool{}
		for _, f := range below {
			rel := strings.TrimPrefix(f, abs+"/")
			parts := strings.Split(rel, "/")
			for i := 1; i < len(parts); i++ { // implied directories, once each
				d := strings.Join(parts[:i], "/")
				if !seen[d] {
					seen[d] = true
					hdr(&tar.Header{Name: base + "/" + d + "/", Typeflag: tar.TypeDir, Mode: 0o755})
				}
			}
			switch {
			case c.Symlinks[f] != "":
				hdr(&tar.Header{Name: base + "/" + rel, Typeflag: tar.TypeSymlink, Linkname: c.Symlinks[f]})
			case c.hasFile(f):
				hdr(&tar.Header{Name: base + "/" + rel, Typeflag: tar.TypeReg, Size: int64(len(c.Files[f]))})
				io.WriteString(tw, c.Files[f])
			case !seen[rel]:
				seen[rel] = true
				hdr(&tar.Header{Name: base + "/" + rel + "/", Typeflag: tar.TypeDir, Mode: 0o755})
			}
		}
	default:
		return nil, false, fmt.Errorf("%w: Error response from daemon: Could not find the file %s in container fake", fs.ErrNotExist, p)
	}
	tw.Close()
	return io.NopCloser(&buf), isDir, nil
}

func (c *Container) hasFile(p string) bool {
	_, ok := c.Files[p]
	return ok
}

func (c *Container) isDir(p string) bool {
	if p == "/" {
		return true
	}
	for _, d := range c.Dirs {
		if d == p || strings.HasPrefix(d, p+"/") {
			return true
		}
	}
	for _, m := range []map[string]string{c.Files, c.Symlinks} {
		for f := range m {
			if strings.HasPrefix(f, p+"/") {
				return true
			}
		}
	}
	return false
}
