package localqueue

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"
)

// Store errors; implementations wrap them.
var (
	ErrNotFound = errors.New("localqueue: task not found")
	ErrExists   = errors.New("localqueue: task already exists")
)

// Store keeps task records. The [Queue] serialises every read-modify-write of
// a record itself, so a Store only needs to be safe for concurrent use, not
// transactional. Records passed in and handed out belong to the caller: an
// implementation must not keep or share them (copy them, or serialise them).
type Store interface {
	// Get returns the record of taskID, or an error wrapping [ErrNotFound].
	Get(ctx context.Context, taskID string) (*TaskRecord, error)
	// Create stores a new record, or fails with an error wrapping
	// [ErrExists] if the taskId is taken.
	Create(ctx context.Context, rec *TaskRecord) error
	// Update replaces the stored record with the same taskId.
	Update(ctx context.Context, rec *TaskRecord) error
	// Each calls fn with every stored record, in no particular order, and
	// stops at fn's first error. The Queue calls it once, in [New], to
	// rebuild its in-memory indexes.
	Each(ctx context.Context, fn func(*TaskRecord) error) error
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
	Name        string    `json:"name"`
	StorageType string    `json:"storageType"` // s3, reference, link or error
	ContentType string    `json:"contentType"`
	Expires     time.Time `json:"expires"`
	URL         string    `json:"url,omitempty"`      // reference
	Link        string    `json:"artifact,omitempty"` // link: name of the target artifact
	Reason      string    `json:"reason,omitempty"`   // error
	Message     string    `json:"message,omitempty"`  // error
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

// NewMemStore returns a [Store] that keeps records in memory.
func NewMemStore() Store { return &memStore{tasks: map[string]*TaskRecord{}} }

type memStore struct {
	mu    sync.RWMutex
	tasks map[string]*TaskRecord
}

func (s *memStore) Get(_ context.Context, taskID string) (*TaskRecord, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	rec, ok := s.tasks[taskID]
	if !ok {
		return nil, fmt.Errorf("get %s: %w", taskID, ErrNotFound)
	}
	return rec.clone(), nil
}

func (s *memStore) Create(_ context.Context, rec *TaskRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tasks[rec.TaskID]; ok {
		return fmt.Errorf("create %s: %w", rec.TaskID, ErrExists)
	}
	s.tasks[rec.TaskID] = rec.clone()
	return nil
}

func (s *memStore) Update(_ context.Context, rec *TaskRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tasks[rec.TaskID]; !ok {
		return fmt.Errorf("update %s: %w", rec.TaskID, ErrNotFound)
	}
	s.tasks[rec.TaskID] = rec.clone()
	return nil
}

func (s *memStore) Each(_ context.Context, fn func(*TaskRecord) error) error {
	s.mu.RLock()
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
