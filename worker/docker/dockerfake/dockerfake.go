// Package dockerfake is a scripted, in-memory Docker daemon for tests only.
//
// A [Fake] has the methods the task runner and the image feature call on
// Docker (EnsureImage, LoadImage, TagImage, ListTags, InspectImage, Create,
// Attach, Start, Wait, Kill, Remove, CopyFrom) with the daemon's semantics,
// but every container follows a [Script]: output written to the attach
// stream in steps, then an exit code, or running until it is killed. Loaded
// images are read from real `docker save` archives (manifest.json and the
// image configuration), so their IDs and configurations are the daemon's.
// It records every container spec created and every Kill and Remove call,
// and reports containers that were created but never removed.
//
// It starts no goroutine before Start and stops every container goroutine
// when the container stops, so it works inside a testing/synctest bubble,
// where the steps' delays pass in fake time. Create the Fake inside the
// bubble that uses it, and call [Fake.Close] before the bubble ends.
package dockerfake

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.dockerworker.dev/docker-worker/worker/docker"
)

// ExitKilled is the exit code of a container stopped by Kill or Remove
// (128 + SIGKILL), as the daemon reports it.
const ExitKilled = 137

// Step is one moment of a container's run.
type Step struct {
	// After is how long the container runs before the step (fake time
	// inside a synctest bubble).
	After time.Duration
	// Until, when non-nil, holds the step until it is closed.
	Until <-chan struct{}
	// Output is then written to the attach streams.
	Output string
}

// Script is how one container behaves once started. The zero Script exits
// 0 at once without output.
type Script struct {
	// Steps run in order after Start.
	Steps []Step
	// ExitCode is the container's exit code after its last step.
	ExitCode int
	// RunUntilKilled keeps the container running after its last step
	// until Kill or Remove stops it (exit code [ExitKilled]).
	RunUntilKilled bool
	// Files are what CopyFrom finds in the container: absolute paths to
	// regular file contents. Directories are implied by the files below
	// them.
	Files map[string]string
	// CreateErr, AttachErr, StartErr and WaitErr make the call fail.
	// A failed Create creates no container.
	CreateErr, AttachErr, StartErr, WaitErr error
}

// Fake is a scripted Docker daemon. Set its fields before first use; it is
// then safe for concurrent use. The zero Fake runs every container with the
// zero Script.
type Fake struct {
	// Script chooses the behaviour of each container from its spec; nil
	// gives every container the zero Script.
	Script func(spec docker.ContainerSpec) Script
	// PullErr, when non-nil, is asked about every EnsureImage call; a
	// non-nil answer fails the pull with that error.
	PullErr func(ref string) error
	// ImageConfig, when non-nil, gives the configuration InspectImage
	// reports for the image pulled as ref (nil: an empty configuration).
	ImageConfig func(ref string) docker.ImageConfig
	// LoadErr, when non-nil, is asked about every LoadImage call; a
	// non-nil answer fails the load with that error after the archive has
	// been read.
	LoadErr func(ref string) error

	mu         sync.Mutex
	n          int
	containers map[string]*container
	order      []string
	pulls      []string
	images     map[string]string             // ref by image ID, for the images pulled
	loaded     map[string]docker.ImageConfig // configuration by image ID, for the images loaded
	tags       map[string]string             // image ID by reference, for loaded and tagged images
	loads      []string
	kills      []Call
	removes    []Call
}

// Call is a recorded Kill or Remove call.
type Call struct {
	ID string
	At time.Time
}

// Container is what the fake knows about a created container.
type Container struct {
	ID   string
	Spec docker.ContainerSpec
	// Created, Started and Stopped are when it happened (zero when not).
	Created, Started, Stopped time.Time
	// ExitCode is the exit code once stopped.
	ExitCode int
	// Killed says that Kill or Remove stopped it while it ran.
	Killed bool
	// Removed says that Remove was called for it.
	Removed bool
}

type state int

const (
	created state = iota
	running
	stopped
)

type container struct {
	Container
	script  Script
	state   state
	kill    chan struct{} // closed when Kill or Remove stops the container
	done    chan struct{} // closed when the container stops
	streams []*stream
}

// EnsureImage records the pull of ref and returns an image ID derived from
// ref, or fails with PullErr's error. It writes one progress line.
func (f *Fake) EnsureImage(ctx context.Context, ref string, progress io.Writer, _ docker.PullPolicy) (string, error) {
	f.mu.Lock()
	f.pulls = append(f.pulls, ref)
	f.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("pull image %q: %w", ref, context.Cause(ctx))
	}
	if f.PullErr != nil {
		if err := f.PullErr(ref); err != nil {
			return "", fmt.Errorf("pull image %q: %w", ref, err)
		}
	}
	if progress != nil {
		fmt.Fprintf(progress, "%s exists in the cache.\n", ref)
	}
	id := ImageID(ref)
	f.mu.Lock()
	if f.images == nil {
		f.images = map[string]string{}
	}
	f.images[id] = ref
	f.mu.Unlock()
	return id, nil
}

// InspectImage returns the configuration of an image EnsureImage or
// LoadImage provided, by reference or ID; other images do not exist.
func (f *Fake) InspectImage(_ context.Context, ref string) (docker.ImageConfig, error) {
	f.mu.Lock()
	if cfg, ok := f.loadedLocked(ref); ok {
		f.mu.Unlock()
		return cfg, nil
	}
	name, ok := f.images[ref]
	if !ok {
		if _, pulled := f.images[ImageID(ref)]; pulled {
			name, ok = ref, true
		}
	}
	f.mu.Unlock()
	if !ok {
		return docker.ImageConfig{}, fmt.Errorf("inspect image %q: %w: no such image", ref, fs.ErrNotExist)
	}
	var cfg docker.ImageConfig
	if f.ImageConfig != nil {
		cfg = f.ImageConfig(name)
	}
	cfg.ID = ImageID(name)
	return cfg, nil
}

// ImageID is the image ID EnsureImage returns for ref.
func ImageID(ref string) string {
	sum := sha256.Sum256([]byte(ref))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Create records spec and creates a container following the spec's Script.
func (f *Fake) Create(ctx context.Context, spec docker.ContainerSpec) (string, error) {
	var script Script
	if f.Script != nil {
		script = f.Script(spec)
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("create container: %w", context.Cause(ctx))
	}
	if script.CreateErr != nil {
		return "", script.CreateErr
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	id := fmt.Sprintf("%012x", f.n)
	if f.containers == nil {
		f.containers = map[string]*container{}
	}
	f.containers[id] = &container{
		Container: Container{ID: id, Spec: spec, Created: time.Now()},
		script:    script,
		kill:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	f.order = append(f.order, id)
	return id, nil
}

// get returns the container id, which has not been removed; f.mu is held.
func (f *Fake) get(id string) (*container, error) {
	c, ok := f.containers[id]
	if !ok || c.Removed {
		return nil, fmt.Errorf("%w: no such container: %s", fs.ErrNotExist, id)
	}
	return c, nil
}

// Attach returns the container's output from now on. The stream ends
// (io.EOF) once the container has stopped and its output is read; closing
// it, or ctx being done, ends it early.
func (f *Fake) Attach(ctx context.Context, id string) (io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.get(id)
	if err != nil {
		return nil, fmt.Errorf("attach to container %s: %w", id, err)
	}
	if c.script.AttachErr != nil {
		return nil, c.script.AttachErr
	}
	s := &stream{wake: make(chan struct{}, 1)}
	if c.state == stopped {
		s.end()
	}
	c.streams = append(c.streams, s)
	stop := context.AfterFunc(ctx, func() { s.Close() })
	s.mu.Lock()
	s.stop = stop
	s.mu.Unlock()
	return s, nil
}

// Start starts the container's script.
func (f *Fake) Start(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.get(id)
	if err != nil {
		return fmt.Errorf("start container %s: %w", id, err)
	}
	if c.script.StartErr != nil {
		return c.script.StartErr
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("start container %s: %w", id, context.Cause(ctx))
	}
	if c.state != created {
		return fmt.Errorf("start container %s: already started", id)
	}
	c.state = running
	c.Started = time.Now()
	go f.run(c)
	return nil
}

// run plays the script of a started container.
func (f *Fake) run(c *container) {
	for _, st := range c.script.Steps {
		if st.After > 0 {
			t := time.NewTimer(st.After)
			select {
			case <-t.C:
			case <-c.kill:
				t.Stop()
				return
			}
		}
		if st.Until != nil {
			select {
			case <-st.Until:
			case <-c.kill:
				return
			}
		}
		f.mu.Lock()
		if c.state == running {
			for _, s := range c.streams {
				s.write([]byte(st.Output))
			}
		}
		f.mu.Unlock()
	}
	if c.script.RunUntilKilled {
		<-c.kill
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopLocked(c, c.script.ExitCode)
}

// stopLocked stops c with code unless it has stopped already.
func (f *Fake) stopLocked(c *container, code int) {
	if c.state == stopped {
		return
	}
	c.state = stopped
	c.ExitCode = code
	c.Stopped = time.Now()
	close(c.done)
	for _, s := range c.streams {
		s.end()
	}
}

// killLocked stops a running container with [ExitKilled].
func (f *Fake) killLocked(c *container) {
	if c.state != running {
		return
	}
	c.Killed = true
	close(c.kill)
	f.stopLocked(c, ExitKilled)
}

// Wait returns the exit code once the container has stopped; it returns
// at once for a container that is not running. ctx being done abandons the
// wait, not the container.
func (f *Fake) Wait(ctx context.Context, id string) (int, error) {
	f.mu.Lock()
	c, err := f.get(id)
	if err != nil {
		f.mu.Unlock()
		return 0, fmt.Errorf("wait for container %s: %w", id, err)
	}
	if c.script.WaitErr != nil {
		f.mu.Unlock()
		return 0, c.script.WaitErr
	}
	if c.state == created {
		f.mu.Unlock()
		return 0, nil
	}
	done := c.done
	f.mu.Unlock()
	select {
	case <-done:
		f.mu.Lock()
		defer f.mu.Unlock()
		return c.ExitCode, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("wait for container %s: %w", id, context.Cause(ctx))
	}
}

// Kill records the call and SIGKILLs the container: a running container
// stops at once with [ExitKilled]. A container that is not running or does
// not exist is not an error.
func (f *Fake) Kill(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kills = append(f.kills, Call{ID: id, At: time.Now()})
	if c, ok := f.containers[id]; ok {
		f.killLocked(c)
	}
	return nil
}

// Remove records the call and force-removes the container, killing it if
// it runs. A missing container is not an error.
func (f *Fake) Remove(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removes = append(f.removes, Call{ID: id, At: time.Now()})
	if c, ok := f.containers[id]; ok && !c.Removed {
		f.killLocked(c)
		f.stopLocked(c, c.ExitCode)
		c.Removed = true
	}
	return nil
}

// CopyFrom returns a tar stream of path in the container's Files, as
// Docker's archive API does: a file is one entry named after its base
// name, a directory an entry "<base>/" followed by everything below it. A
// path that does not exist gives an error satisfying
// errors.Is(err, fs.ErrNotExist).
func (f *Fake) CopyFrom(_ context.Context, id, p string) (io.ReadCloser, bool, error) {
	f.mu.Lock()
	c, err := f.get(id)
	f.mu.Unlock()
	if err != nil {
		return nil, false, fmt.Errorf("copy %s from container %s: %w", p, id, err)
	}
	files := c.script.Files
	abs := path.Join("/", p)
	base := path.Base(abs)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(1500000000, 0)
	isDir := false
	if body, ok := files[abs]; ok {
		tw.WriteHeader(&tar.Header{Name: base, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body)), ModTime: mtime})
		io.WriteString(tw, body)
	} else {
		prefix := strings.TrimSuffix(abs, "/") + "/"
		var below []string
		for name := range files {
			if strings.HasPrefix(name, prefix) {
				below = append(below, name)
			}
		}
		if len(below) == 0 && abs != "/" {
			return nil, false, fmt.Errorf("%w: copy %s from container %s: no such file or directory", fs.ErrNotExist, p, id)
		}
		sort.Strings(below)
		isDir = true
		root := base + "/"
		if abs == "/" {
			root = "./"
		}
		tw.WriteHeader(&tar.Header{Name: root, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime})
		dirs := map[string]bool{}
		for _, name := range below {
			rel := strings.TrimPrefix(name, prefix)
			for d := path.Dir(rel); d != "."; d = path.Dir(d) {
				if !dirs[d] {
					dirs[d] = true
					tw.WriteHeader(&tar.Header{Name: root + d + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime})
				}
			}
			body := files[name]
			tw.WriteHeader(&tar.Header{Name: root + rel, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body)), ModTime: mtime})
			io.WriteString(tw, body)
		}
	}
	tw.Close() // writes to a bytes.Buffer cannot fail
	return io.NopCloser(&buf), isDir, nil
}

// Close stops every container still running, so that no goroutine of the
// fake outlives the test. It records no Kill call.
func (f *Fake) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.containers {
		if c.state == running {
			c.Killed = true
			close(c.kill)
			f.stopLocked(c, ExitKilled)
		}
	}
}

// Containers returns every container created, in creation order.
func (f *Fake) Containers() []Container {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Container, len(f.order))
	for i, id := range f.order {
		out[i] = f.containers[id].Container
	}
	return out
}

// Running returns the IDs of the containers running now.
func (f *Fake) Running() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, id := range f.order {
		if f.containers[id].state == running {
			out = append(out, id)
		}
	}
	return out
}

// Leaked returns the IDs of the containers created but never removed.
func (f *Fake) Leaked() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, id := range f.order {
		if !f.containers[id].Removed {
			out = append(out, id)
		}
	}
	return out
}

// Pulls returns the image references passed to EnsureImage, in order.
func (f *Fake) Pulls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.pulls)
}

// Kills returns every Kill call, in order.
func (f *Fake) Kills() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.kills)
}

// Removes returns every Remove call, in order.
func (f *Fake) Removes() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.removes)
}

// errClosed is what reading a closed attach stream returns.
var errClosed = errors.New("dockerfake: attach stream closed")

// stream is an attach stream: an unbounded buffer, so that a container
// never blocks on its output, with a single reader.
type stream struct {
	mu     sync.Mutex
	buf    []byte
	eof    bool // the container stopped: no more output
	closed bool // the reader closed the stream
	wake   chan struct{}
	stop   func() bool
}

func (s *stream) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *stream) write(p []byte) {
	s.mu.Lock()
	if !s.closed {
		s.buf = append(s.buf, p...)
	}
	s.mu.Unlock()
	s.signal()
}

func (s *stream) end() {
	s.mu.Lock()
	s.eof = true
	s.mu.Unlock()
	s.signal()
}

func (s *stream) Read(p []byte) (int, error) {
	for {
		s.mu.Lock()
		switch {
		case s.closed:
			s.mu.Unlock()
			return 0, errClosed
		case len(s.buf) > 0:
			n := copy(p, s.buf)
			s.buf = s.buf[n:]
			s.mu.Unlock()
			return n, nil
		case s.eof:
			s.mu.Unlock()
			return 0, io.EOF
		}
		s.mu.Unlock()
		<-s.wake
	}
}

func (s *stream) Close() error {
	s.mu.Lock()
	s.closed = true
	s.buf = nil
	stop := s.stop
	s.mu.Unlock()
	if stop != nil {
		stop()
	}
	s.signal()
	return nil
}

// ListContainers lists the containers not removed whose spec carries all of
// labels, in creation order.
func (f *Fake) ListContainers(_ context.Context, labels map[string]string) ([]docker.ContainerState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []docker.ContainerState
	for _, id := range f.order {
		c := f.containers[id]
		if c.Removed || !hasLabels(c.Spec.Labels, labels) {
			continue
		}
		st := map[state]string{created: "created", running: "running", stopped: "exited"}[c.state]
		out = append(out, docker.ContainerState{ID: id, ImageID: ImageID(c.Spec.Image), State: st,
			Labels: maps.Clone(c.Spec.Labels), Created: c.Created})
	}
	return out, nil
}

func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}
