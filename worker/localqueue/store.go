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
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Store errors; implementations wrap them.
var (
	ErrNotFound = errors.New("localqueue: not found")
	ErrClosed   = errors.New("localqueue: store closed")
)

// Store keeps the queue's state: task records (with their runs), the runs'
// artifact records (each a record of its own, so that creating one artifact
// writes that artifact only, however many the run has), object records of
// the object service, the index service's entries and namespaces, the
// purge-cache service's requests, a few named secrets, the Hawk nonces seen
// within the clock-skew window, and the outbox of Pulse messages not yet
// confirmed by the broker.
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
	// Artifact returns the artifact name of run runID of taskID, or an
	// error wrapping [ErrNotFound].
	Artifact(ctx context.Context, taskID string, runID int, name string) (*ArtifactRecord, error)
	// Artifacts returns up to limit artifacts of run runID of taskID, in
	// name order, starting after the name after ("" starts at the
	// beginning). A limit below 1 means no limit.
	Artifacts(ctx context.Context, taskID string, runID int, after string, limit int) ([]*ArtifactRecord, error)
	// Object returns the object record of name, or an error wrapping
	// [ErrNotFound].
	Object(ctx context.Context, name string) (*ObjectRecord, error)
	// IndexedTask returns the index entry at the index path path, or an
	// error wrapping [ErrNotFound].
	IndexedTask(ctx context.Context, path string) (*IndexedTaskRecord, error)
	// Namespace returns the index namespace path, or an error wrapping
	// [ErrNotFound].
	Namespace(ctx context.Context, path string) (*NamespaceRecord, error)
	// IndexedTasks returns up to limit index entries directly in namespace
	// ("" is the root), in the order of their last path element, starting
	// after the element after ("" starts at the beginning).
	IndexedTasks(ctx context.Context, namespace, after string, limit int) ([]*IndexedTaskRecord, error)
	// Namespaces returns up to limit namespaces directly under parent, in
	// the same order and with the same paging as IndexedTasks.
	Namespaces(ctx context.Context, parent, after string, limit int) ([]*NamespaceRecord, error)
	// PurgeRequests returns up to limit purge requests ordered by
	// workerPoolId then cacheName, starting after the request whose
	// [PurgeRecord.Key] is after; only those of workerPoolID unless it is
	// "". A limit below 1 means no limit.
	PurgeRequests(ctx context.Context, workerPoolID, after string, limit int) ([]*PurgeRecord, error)
	// Commit stores the records of c (replacing those with the same taskId,
	// taskId/runId/name, name, path or key), removes the index entries it
	// deletes, records its nonces and appends its messages to the outbox,
	// atomically.
	Commit(ctx context.Context, c Change) error
	// Outbox returns up to limit messages of the outbox, oldest first.
	Outbox(ctx context.Context, limit int) ([]OutboxEntry, error)
	// Ack removes delivered messages from the outbox.
	Ack(ctx context.Context, seqs []uint64) error
	// Secret returns the secret stored under name, creating it with a fresh
	// random value on first use.
	Secret(ctx context.Context, name string) (string, error)
	// RememberNonce records a Hawk nonce (key: client, nonce and
	// timestamp) until forgetAt; for a durable Store it is on disk when
	// RememberNonce returns nil, so a replay is refused after a restart too.
	RememberNonce(ctx context.Context, key string, forgetAt time.Time) error
	// Nonces returns the recorded nonces still remembered at now, with
	// when each may be forgotten, and drops the others.
	Nonces(ctx context.Context, now time.Time) (map[string]time.Time, error)
	// ForgetNonces removes recorded nonces.
	ForgetNonces(ctx context.Context, keys []string) error
	// Close releases the store; later calls fail with [ErrClosed].
	Close() error
}

// Change is one atomic update of a [Store].
type Change struct {
	Tasks []*TaskRecord
	// Artifacts are artifact records, each replacing the one with the same
	// TaskID, RunID and Name.
	Artifacts     []*ArtifactRecord
	Objects       []*ObjectRecord
	IndexedTasks  []*IndexedTaskRecord
	Namespaces    []*NamespaceRecord
	PurgeRequests []*PurgeRecord
	// DeleteIndexedTasks are index paths whose entries are removed (after
	// IndexedTasks are stored).
	DeleteIndexedTasks []string
	Messages           []Message
	// Nonces are Hawk nonces recorded with the change, as RememberNonce
	// records them: the nonce of the request that made it.
	Nonces []NonceRecord
}

// NonceRecord is a Hawk nonce the queue remembers until ForgetAt.
type NonceRecord struct {
	Key      string
	ForgetAt time.Time
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

// RunRecord is one run of a task. Zero times are absent. Its artifacts are
// records of their own ([ArtifactRecord], [Store.Artifacts]).
type RunRecord struct {
	RunID          int       `json:"runId"`
	State          string    `json:"state"`
	ReasonCreated  string    `json:"reasonCreated"`
	ReasonResolved string    `json:"reasonResolved,omitempty"`
	WorkerGroup    string    `json:"workerGroup,omitempty"`
	WorkerID       string    `json:"workerId,omitempty"`
	Scheduled      time.Time `json:"scheduled"`
	Started        time.Time `json:"started,omitzero"`
	Resolved       time.Time `json:"resolved,omitzero"`
	TakenUntil     time.Time `json:"takenUntil,omitzero"`
}

// ArtifactRecord is one artifact of a run: run RunID of task TaskID. Which
// of the type-specific fields are set depends on StorageType.
type ArtifactRecord struct {
	TaskID        string    `json:"taskId"`
	RunID         int       `json:"runId"`
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

// IndexedTaskRecord is one entry of the index service: the task found at
// index path Path (namespace and name, dot-separated).
type IndexedTaskRecord struct {
	Path    string          `json:"path"`
	TaskID  string          `json:"taskId"`
	Rank    float64         `json:"rank"`
	Data    json.RawMessage `json:"data"`
	Expires time.Time       `json:"expires"`
}

// NamespaceRecord is one namespace of the index service; it lives as long as
// the longest-lived entry ever inserted below it.
type NamespaceRecord struct {
	Path    string    `json:"path"`
	Expires time.Time `json:"expires"`
}

// PurgeRecord is one request of the purge-cache service: caches named
// CacheName on the workers of WorkerPoolID created before Before are to be
// purged. It is dropped at Expires.
type PurgeRecord struct {
	WorkerPoolID string    `json:"workerPoolId"`
	CacheName    string    `json:"cacheName"`
	Before       time.Time `json:"before"`
	Expires      time.Time `json:"expires"`
}

// Key orders purge requests and names one in [Store.PurgeRequests] paging.
func (p *PurgeRecord) Key() string { return p.WorkerPoolID + "\x00" + p.CacheName }

// splitPath splits an index path into its parent namespace ("" at the root)
// and its last element.
func splitPath(path string) (parent, name string) {
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[:i], path[i+1:]
	}
	return "", path
}

// childKey is the storage key of the index entry or namespace path: parent
// and name joined by a NUL, so that the direct children of a namespace are
// one contiguous, name-ordered key range.
func childKey(path string) string {
	parent, name := splitPath(path)
	return parent + "\x00" + name
}

func (r *IndexedTaskRecord) clone() *IndexedTaskRecord {
	c := *r
	c.Data = slices.Clone(r.Data)
	return &c
}

// clone copies rec deeply enough that mutating the copy's runs leaves rec
// alone (the definition is immutable and shared).
func (rec *TaskRecord) clone() *TaskRecord {
	c := *rec
	c.Runs = slices.Clone(rec.Runs)
	return &c
}

func (a *ArtifactRecord) clone() *ArtifactRecord {
	c := *a
	if a.ContentLength != nil {
		n := *a.ContentLength
		c.ContentLength = &n
	}
	return &c
}

// runArtifactsPrefix is the common prefix of the storage keys of run runID
// of taskID's artifacts (task ids are slugids, without a slash).
func runArtifactsPrefix(taskID string, runID int) string {
	return taskID + "/" + strconv.Itoa(runID) + "/"
}

// artifactKey is the storage key of an artifact: its run's prefix and its
// name, so that a run's artifacts are one name-ordered key range.
func artifactKey(taskID string, runID int, name string) string {
	return runArtifactsPrefix(taskID, runID) + name
}

func (a *ArtifactRecord) key() string { return artifactKey(a.TaskID, a.RunID, a.Name) }

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
	return &memStore{
		tasks: map[string]*TaskRecord{}, artifacts: map[string]map[string]*ArtifactRecord{}, objects: map[string]*ObjectRecord{}, secrets: map[string]string{},
		indexed: map[string]*IndexedTaskRecord{}, namespaces: map[string]*NamespaceRecord{}, purges: map[string]*PurgeRecord{},
		nonces: map[string]time.Time{},
	}
}

type memStore struct {
	mu         sync.RWMutex
	closed     bool
	tasks      map[string]*TaskRecord
	artifacts  map[string]map[string]*ArtifactRecord // by runArtifactsPrefix, then name
	objects    map[string]*ObjectRecord
	indexed    map[string]*IndexedTaskRecord // by childKey
	namespaces map[string]*NamespaceRecord   // by childKey
	purges     map[string]*PurgeRecord       // by Key
	secrets    map[string]string
	nonces     map[string]time.Time
	outbox     []OutboxEntry
	seq        uint64
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

func (s *memStore) Artifact(_ context.Context, taskID string, runID int, name string) (*ArtifactRecord, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	a, ok := s.artifacts[runArtifactsPrefix(taskID, runID)][name]
	if !ok {
		return nil, fmt.Errorf("artifact %q of %s/%d: %w", name, taskID, runID, ErrNotFound)
	}
	return a.clone(), nil
}

func (s *memStore) Artifacts(_ context.Context, taskID string, runID int, after string, limit int) ([]*ArtifactRecord, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	arts := memRange(s.artifacts[runArtifactsPrefix(taskID, runID)], "", after, limit)
	for i, a := range arts {
		arts[i] = a.clone()
	}
	return arts, nil
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

func (s *memStore) IndexedTask(_ context.Context, path string) (*IndexedTaskRecord, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	r, ok := s.indexed[childKey(path)]
	if !ok {
		return nil, fmt.Errorf("indexed task %q: %w", path, ErrNotFound)
	}
	return r.clone(), nil
}

func (s *memStore) Namespace(_ context.Context, path string) (*NamespaceRecord, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	n, ok := s.namespaces[childKey(path)]
	if !ok {
		return nil, fmt.Errorf("namespace %q: %w", path, ErrNotFound)
	}
	cp := *n
	return &cp, nil
}

// memRange returns the values of m whose keys start with prefix and sort
// after prefix+after, in key order, at most limit of them (all when limit
// is below 1).
func memRange[V any](m map[string]V, prefix, after string, limit int) []V {
	var keys []string
	for k := range m {
		if strings.HasPrefix(k, prefix) && (after == "" || k > prefix+after) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	if limit > 0 && len(keys) > limit {
		keys = keys[:limit]
	}
	out := make([]V, len(keys))
	for i, k := range keys {
		out[i] = m[k]
	}
	return out
}

func (s *memStore) IndexedTasks(_ context.Context, namespace, after string, limit int) ([]*IndexedTaskRecord, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	recs := memRange(s.indexed, namespace+"\x00", after, limit)
	for i, r := range recs {
		recs[i] = r.clone()
	}
	return recs, nil
}

func (s *memStore) Namespaces(_ context.Context, parent, after string, limit int) ([]*NamespaceRecord, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	recs := memRange(s.namespaces, parent+"\x00", after, limit)
	for i, n := range recs {
		cp := *n
		recs[i] = &cp
	}
	return recs, nil
}

func (s *memStore) PurgeRequests(_ context.Context, workerPoolID, after string, limit int) ([]*PurgeRecord, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	prefix := ""
	if workerPoolID != "" {
		prefix = workerPoolID + "\x00"
		after = strings.TrimPrefix(after, prefix)
	}
	recs := memRange(s.purges, prefix, after, limit)
	for i, p := range recs {
		cp := *p
		recs[i] = &cp
	}
	return recs, nil
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
	for _, a := range c.Artifacts {
		run := runArtifactsPrefix(a.TaskID, a.RunID)
		if s.artifacts[run] == nil {
			s.artifacts[run] = map[string]*ArtifactRecord{}
		}
		s.artifacts[run][a.Name] = a.clone()
	}
	for _, o := range c.Objects {
		s.objects[o.Name] = o.clone()
	}
	for _, r := range c.IndexedTasks {
		s.indexed[childKey(r.Path)] = r.clone()
	}
	for _, n := range c.Namespaces {
		cp := *n
		s.namespaces[childKey(n.Path)] = &cp
	}
	for _, p := range c.PurgeRequests {
		cp := *p
		s.purges[p.Key()] = &cp
	}
	for _, path := range c.DeleteIndexedTasks {
		delete(s.indexed, childKey(path))
	}
	for _, n := range c.Nonces {
		s.nonces[n.Key] = n.ForgetAt
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

func (s *memStore) RememberNonce(_ context.Context, key string, forgetAt time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.nonces[key] = forgetAt
	return nil
}

func (s *memStore) Nonces(_ context.Context, now time.Time) (map[string]time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	maps.DeleteFunc(s.nonces, func(_ string, t time.Time) bool { return !t.After(now) })
	return maps.Clone(s.nonces), nil
}

func (s *memStore) ForgetNonces(_ context.Context, keys []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	for _, k := range keys {
		delete(s.nonces, k)
	}
	return nil
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
