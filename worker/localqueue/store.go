package localqueue

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"
)

// Store errors; implementations wrap them.
var (
	ErrNotFound = errors.New("localqueue: not found")
	ErrClosed   = errors.New("localqueue: store closed")
)

// Store keeps the queue's state: task records (with their runs and artifact
// metadata), object records of the object service, a few named secrets, and
// the outbox of Pulse messages not yet confirmed by the broker.
//
// The [Queue] serialises every read-modify-write itself, so a Store only
// needs to be safe for concurrent use, and to apply each [Change]
// atomically: when Commit returns nil, every part of the change is durable
// (for a durable Store), and after a crash either all of it or none of it is
// there. Records passed in and handed out belong to the caller: an
// implementation must not keep or share them (copy or serialise them).
type Store interface {
	// Get returns the record of taskID, or an error wrapping [ErrNotFound].
	Get(ctx context.Context, taskID string) (*TaskRecord, error)
	// Each calls fn with every task record, in no particular order, and
	// stops at fn's first error. The Queue calls it in [New] to rebuild its
	// in-memory indexes.
	Each(ctx context.Context, fn func(*TaskRecord) error) error
	// Object returns the object record of name, or an error wrapping
	// [ErrNotFound].
	Object(ctx context.Context, name string) (*ObjectRecord, error)
	// Commit stores the records of c (replacing those with the same taskId
	// or name) and appends its messages to the outbox, atomically.
	Commit(ctx context.Context, c Change) error
	// Outbox returns up to limit messages of the outbox, oldest first.
	Outbox(ctx context.Context, limit int) ([]OutboxEntry, error)
	// Ack removes delivered messages from the outbox.
	Ack(ctx context.Context, seqs []uint64) error
	// Secret returns the secret stored under name, creating it with a fresh
	// random value on first use.
	Secret(ctx context.Context, name string) (string, error)
	// Close releases the store; later calls fail with [ErrClosed].
	Close() error
}

// Change is one atomic update of a [Store].
type Change struct {
	Tasks    []*TaskRecord
	Objects  []*ObjectRecord
	Messages []Message
}

// OutboxEntry is a message waiting in the outbox, with its sequence number.
type OutboxEntry struct {
	Seq uint64
	Message
}

// TaskRecord is everything the queue knows about one task.
type TaskRecord struct {
	TaskID string `json:"taskId"`
	// Task is the definition as served by the `task` endpoint, defaults
	// filled in and dates normalised. It is never modified after creation.
	Task        TaskDefinition `json:"task"`
	RetriesLeft int            `json:"retriesLeft"`
	Runs        []RunRecord    `json:"runs"`
}

// RunRecord is one run of a task. Zero times are absent.
type RunRecord struct {
	RunID          int                       `json:"runId"`
	State          string                    `json:"state"`
	ReasonCreated  string                    `json:"reasonCreated"`
	ReasonResolved string                    `json:"reasonResolved,omitempty"`
	WorkerGroup    string                    `json:"workerGroup,omitempty"`
	WorkerID       string                    `json:"workerId,omitempty"`
	Scheduled      time.Time                 `json:"scheduled"`
	Started        time.Time                 `json:"started,omitzero"`
	Resolved       time.Time                 `json:"resolved,omitzero"`
	TakenUntil     time.Time                 `json:"takenUntil,omitzero"`
	Artifacts      map[string]ArtifactRecord `json:"artifacts,omitempty"`
}

// ArtifactRecord is one artifact of a run. Which of the type-specific
// fields are set depends on StorageType.
type ArtifactRecord struct {
	Name          string    `json:"name"`
	StorageType   string    `json:"storageType"` // s3, object, reference, link or error
	ContentType   string    `json:"contentType"`
	ContentLength *int64    `json:"contentLength,omitempty"`
	Expires       time.Time `json:"expires"`
	// Present is false for an object artifact until finishArtifact.
	Present  bool   `json:"present"`
	UploadID string `json:"uploadId,omitempty"` // object, until finished
	URL      string `json:"url,omitempty"`      // reference
	Link     string `json:"artifact,omitempty"` // link: name of the target artifact
	Reason   string `json:"reason,omitempty"`   // error
	Message  string `json:"message,omitempty"`  // error
}

// ObjectRecord is one object of the object service.
type ObjectRecord struct {
	Name      string    `json:"name"`
	ProjectID string    `json:"projectId"`
	UploadID  string    `json:"uploadId"`
	Expires   time.Time `json:"expires"`
	// Finished is set by finishUpload; the object is immutable from then on.
	Finished bool              `json:"finished"`
	Hashes   map[string]string `json:"hashes,omitempty"`
}

// clone copies rec deeply enough that mutating the copy's runs and
// artifacts leaves rec alone (the definition is immutable and shared).
func (rec *TaskRecord) clone() *TaskRecord {
	c := *rec
	c.Runs = make([]RunRecord, len(rec.Runs))
	for i, r := range rec.Runs {
		r.Artifacts = maps.Clone(r.Artifacts)
		c.Runs[i] = r
	}
	return &c
}

func (o *ObjectRecord) clone() *ObjectRecord {
	c := *o
	c.Hashes = maps.Clone(o.Hashes)
	return &c
}

// newSecret is 32 random bytes, base64url.
func newSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate secret: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// NewMemStore returns a [Store] that keeps everything in memory: nothing
// survives the process.
func NewMemStore() Store {
	return &memStore{tasks: map[string]*TaskRecord{}, objects: map[string]*ObjectRecord{}, secrets: map[string]string{}}
}

type memStore struct {
	mu      sync.RWMutex
	closed  bool
	tasks   map[string]*TaskRecord
	objects map[string]*ObjectRecord
	secrets map[string]string
	outbox  []OutboxEntry
	seq     uint64
}

func (s *memStore) Get(_ context.Context, taskID string) (*TaskRecord, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	rec, ok := s.tasks[taskID]
	if !ok {
		return nil, fmt.Errorf("task %s: %w", taskID, ErrNotFound)
	}
	return rec.clone(), nil
}

func (s *memStore) Each(_ context.Context, fn func(*TaskRecord) error) error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	recs := make([]*TaskRecord, 0, len(s.tasks))
	for _, rec := range s.tasks {
		recs = append(recs, rec.clone())
	}
	s.mu.RUnlock()
	for _, rec := range recs {
		if err := fn(rec); err != nil {
			return err
		}
	}
	return nil
}

func (s *memStore) Object(_ context.Context, name string) (*ObjectRecord, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	o, ok := s.objects[name]
	if !ok {
		return nil, fmt.Errorf("object %q: %w", name, ErrNotFound)
	}
	return o.clone(), nil
}

func (s *memStore) Commit(_ context.Context, c Change) error {
	// Copy the messages' bodies before taking the lock (they are shared
	// slices otherwise).
	msgs := make([]Message, len(c.Messages))
	for i, m := range c.Messages {
		m.Body = slices.Clone(m.Body)
		m.CC = slices.Clone(m.CC)
		msgs[i] = m
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	for _, rec := range c.Tasks {
		s.tasks[rec.TaskID] = rec.clone()
	}
	for _, o := range c.Objects {
		s.objects[o.Name] = o.clone()
	}
	for _, m := range msgs {
		s.seq++
		s.outbox = append(s.outbox, OutboxEntry{Seq: s.seq, Message: m})
	}
	return nil
}

func (s *memStore) Outbox(_ context.Context, limit int) ([]OutboxEntry, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	return slices.Clone(s.outbox[:min(limit, len(s.outbox))]), nil
}

func (s *memStore) Ack(_ context.Context, seqs []uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.outbox = slices.DeleteFunc(s.outbox, func(e OutboxEntry) bool { return slices.Contains(seqs, e.Seq) })
	return nil
}

func (s *memStore) Secret(_ context.Context, name string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return "", ErrClosed
	}
	if v, ok := s.secrets[name]; ok {
		return v, nil
	}
	v, err := newSecret()
	if err != nil {
		return "", err
	}
	s.secrets[name] = v
	return v, nil
}

func (s *memStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

// marshalRecord and unmarshalRecord are the encoding durable stores use.
func marshalRecord(v any) ([]byte, error) { return json.Marshal(v) }

func unmarshalRecord(b []byte, v any) error { return json.Unmarshal(b, v) }
