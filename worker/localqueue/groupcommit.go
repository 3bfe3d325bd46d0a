package localqueue

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Group commit. The Queue changes its state under one mutex, and a durable
// Store makes each change durable with an fsync. Holding the mutex through
// the fsync would serialise every request behind the disk; instead a change
// is applied in memory under the mutex (later requests see it at once) and
// written later, together with every other change applied meanwhile, in one
// transaction and one fsync. No answer leaves the queue before what it
// depends on is durable: the router holds each API answer until every
// change applied so far, the request's own included, is on disk.
//
// The first request to wait writes everything queued so far; requests that
// arrive while it writes queue up and the next waiter writes them all, so
// batches grow with the load and a lone request never waits for company.
// A failed write poisons the store: memory is then ahead of the disk, so
// every later call fails until the queue is restarted on what the disk
// holds.

// batchCommitter is a Store that can apply several changes, in order, in
// one atomic, durable transaction.
type batchCommitter interface {
	CommitBatch(ctx context.Context, cs []Change) error
}

// CommitBatch applies the changes in order (memory is atomic anyway).
func (s *memStore) CommitBatch(ctx context.Context, cs []Change) error {
	for _, c := range cs {
		if err := s.Commit(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

// staged is a record applied but maybe not yet written, with the sequence
// number of the change that applied it. A nil record is a deletion.
type staged[T any] struct {
	rec T
	seq uint64
}

// groupStore is a [Store] in front of another that applies changes at once
// and writes them in groups (see above).
type groupStore struct {
	inner Store

	mu         sync.Mutex
	tasks      map[string]staged[*TaskRecord]
	artifacts  map[string]staged[*ArtifactRecord] // by artifactKey
	objects    map[string]staged[*ObjectRecord]
	indexed    map[string]staged[*IndexedTaskRecord] // by childKey
	namespaces map[string]staged[*NamespaceRecord]   // by childKey
	queued     []Change                              // applied, not yet being written
	applied    uint64                                // sequence number of the last change applied
	durable    uint64                                // … and of the last one written
	writing    bool
	written    chan struct{} // closed (and replaced) when a write ends
	failed     error
	closed     bool

	// commits counts the transactions written to inner; changes the
	// changes they carried.
	commits, changes atomic.Int64
}

func newGroupStore(inner Store) *groupStore {
	return &groupStore{
		inner: inner, written: make(chan struct{}),
		tasks: map[string]staged[*TaskRecord]{}, artifacts: map[string]staged[*ArtifactRecord]{},
		objects: map[string]staged[*ObjectRecord]{},
		indexed: map[string]staged[*IndexedTaskRecord]{}, namespaces: map[string]staged[*NamespaceRecord]{},
	}
}

// usable is nil unless the store failed or is closed; g.mu is held.
func (g *groupStore) usable() error {
	switch {
	case g.failed != nil:
		return g.failed
	case g.closed:
		return ErrClosed
	}
	return nil
}

// apply makes c visible to every later read and queues it for writing. It
// returns the change's sequence number, to [groupStore.wait] on.
func (g *groupStore) apply(c Change) (uint64, error) {
	cc := Change{DeleteIndexedTasks: slices.Clone(c.DeleteIndexedTasks), Nonces: slices.Clone(c.Nonces)}
	for _, rec := range c.Tasks {
		cc.Tasks = append(cc.Tasks, rec.clone())
	}
	for _, a := range c.Artifacts {
		cc.Artifacts = append(cc.Artifacts, a.clone())
	}
	for _, o := range c.Objects {
		cc.Objects = append(cc.Objects, o.clone())
	}
	for _, r := range c.IndexedTasks {
		cc.IndexedTasks = append(cc.IndexedTasks, r.clone())
	}
	for _, n := range c.Namespaces {
		cp := *n
		cc.Namespaces = append(cc.Namespaces, &cp)
	}
	for _, p := range c.PurgeRequests {
		cp := *p
		cc.PurgeRequests = append(cc.PurgeRequests, &cp)
	}
	for _, m := range c.Messages {
		m.Body = slices.Clone(m.Body)
		m.CC = slices.Clone(m.CC)
		cc.Messages = append(cc.Messages, m)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.usable(); err != nil {
		return 0, err
	}
	g.applied++
	seq := g.applied
	for _, rec := range cc.Tasks {
		g.tasks[rec.TaskID] = staged[*TaskRecord]{rec, seq}
	}
	for _, a := range cc.Artifacts {
		g.artifacts[a.key()] = staged[*ArtifactRecord]{a, seq}
	}
	for _, o := range cc.Objects {
		g.objects[o.Name] = staged[*ObjectRecord]{o, seq}
	}
	for _, r := range cc.IndexedTasks {
		g.indexed[childKey(r.Path)] = staged[*IndexedTaskRecord]{r, seq}
	}
	for _, path := range cc.DeleteIndexedTasks {
		g.indexed[childKey(path)] = staged[*IndexedTaskRecord]{nil, seq}
	}
	for _, n := range cc.Namespaces {
		g.namespaces[childKey(n.Path)] = staged[*NamespaceRecord]{n, seq}
	}
	g.queued = append(g.queued, cc)
	return seq, nil
}

// appliedSeq is the sequence number of the last change applied.
func (g *groupStore) appliedSeq() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.applied
}

// wait returns once the change numbered seq (and every one before it) is
// durable, writing the queued changes itself when no one else is.
func (g *groupStore) wait(seq uint64) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	for {
		switch {
		case g.durable >= seq:
			return nil
		case g.failed != nil:
			return g.failed
		case !g.writing:
			g.writeLocked()
		default:
			written := g.written
			g.mu.Unlock()
			<-written
			g.mu.Lock()
		}
	}
}

// writeLocked writes every queued change in one transaction, with g.mu
// released meanwhile, then drops what it wrote from the staged records.
func (g *groupStore) writeLocked() {
	batch, last := g.queued, g.applied
	g.queued, g.writing = nil, true
	g.mu.Unlock()
	var err error
	if bc, ok := g.inner.(batchCommitter); ok {
		err = bc.CommitBatch(context.Background(), batch)
	} else {
		for _, c := range batch {
			if err = g.inner.Commit(context.Background(), c); err != nil {
				break
			}
		}
	}
	g.commits.Add(1)
	g.changes.Add(int64(len(batch)))
	g.mu.Lock()
	g.writing = false
	if err != nil {
		g.failed = fmt.Errorf("localqueue: writing %d changes failed, the queue must be restarted: %w", len(batch), err)
	} else {
		g.durable = last
		prune(g.tasks, last)
		prune(g.artifacts, last)
		prune(g.objects, last)
		prune(g.indexed, last)
		prune(g.namespaces, last)
	}
	close(g.written)
	g.written = make(chan struct{})
}

func prune[T any](m map[string]staged[T], upTo uint64) {
	for k, s := range m {
		if s.seq <= upTo {
			delete(m, k)
		}
	}
}

// sync waits until every change applied so far is durable, so that inner
// holds the whole state (before a read that staged records cannot answer).
func (g *groupStore) sync() error { return g.wait(g.appliedSeq()) }

func (g *groupStore) Commit(_ context.Context, c Change) error {
	seq, err := g.apply(c)
	if err != nil {
		return err
	}
	return g.wait(seq)
}

// lookup returns the staged record of key in m, if any; ok false means
// inner has the latest.
func lookup[T any](g *groupStore, m map[string]staged[T], key string) (rec T, ok bool, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.usable(); err != nil {
		return rec, false, err
	}
	s, ok := m[key]
	return s.rec, ok, nil
}

func (g *groupStore) Get(ctx context.Context, taskID string) (*TaskRecord, error) {
	rec, ok, err := lookup(g, g.tasks, taskID)
	switch {
	case err != nil:
		return nil, err
	case ok:
		return rec.clone(), nil
	}
	return g.inner.Get(ctx, taskID)
}

func (g *groupStore) Artifact(ctx context.Context, taskID string, runID int, name string) (*ArtifactRecord, error) {
	a, ok, err := lookup(g, g.artifacts, artifactKey(taskID, runID, name))
	switch {
	case err != nil:
		return nil, err
	case ok:
		return a.clone(), nil
	}
	return g.inner.Artifact(ctx, taskID, runID, name)
}

func (g *groupStore) Object(ctx context.Context, name string) (*ObjectRecord, error) {
	o, ok, err := lookup(g, g.objects, name)
	switch {
	case err != nil:
		return nil, err
	case ok:
		return o.clone(), nil
	}
	return g.inner.Object(ctx, name)
}

func (g *groupStore) IndexedTask(ctx context.Context, path string) (*IndexedTaskRecord, error) {
	r, ok, err := lookup(g, g.indexed, childKey(path))
	switch {
	case err != nil:
		return nil, err
	case ok && r == nil:
		return nil, fmt.Errorf("indexed task %q: %w", path, ErrNotFound)
	case ok:
		return r.clone(), nil
	}
	return g.inner.IndexedTask(ctx, path)
}

func (g *groupStore) Namespace(ctx context.Context, path string) (*NamespaceRecord, error) {
	n, ok, err := lookup(g, g.namespaces, childKey(path))
	switch {
	case err != nil:
		return nil, err
	case ok:
		cp := *n
		return &cp, nil
	}
	return g.inner.Namespace(ctx, path)
}

// The reads below are rare (start-up, listings, the outbox): they wait for
// the queued changes to be written and read inner.

func (g *groupStore) Each(ctx context.Context, fn func(*TaskRecord) error) error {
	if err := g.sync(); err != nil {
		return err
	}
	return g.inner.Each(ctx, fn)
}

func (g *groupStore) Artifacts(ctx context.Context, taskID string, runID int, after string, limit int) ([]*ArtifactRecord, error) {
	if err := g.sync(); err != nil {
		return nil, err
	}
	return g.inner.Artifacts(ctx, taskID, runID, after, limit)
}

func (g *groupStore) IndexedTasks(ctx context.Context, namespace, after string, limit int) ([]*IndexedTaskRecord, error) {
	if err := g.sync(); err != nil {
		return nil, err
	}
	return g.inner.IndexedTasks(ctx, namespace, after, limit)
}

func (g *groupStore) Namespaces(ctx context.Context, parent, after string, limit int) ([]*NamespaceRecord, error) {
	if err := g.sync(); err != nil {
		return nil, err
	}
	return g.inner.Namespaces(ctx, parent, after, limit)
}

func (g *groupStore) PurgeRequests(ctx context.Context, workerPoolID, after string, limit int) ([]*PurgeRecord, error) {
	if err := g.sync(); err != nil {
		return nil, err
	}
	return g.inner.PurgeRequests(ctx, workerPoolID, after, limit)
}

func (g *groupStore) Outbox(ctx context.Context, limit int) ([]OutboxEntry, error) {
	if err := g.sync(); err != nil {
		return nil, err
	}
	return g.inner.Outbox(ctx, limit)
}

func (g *groupStore) Nonces(ctx context.Context, now time.Time) (map[string]time.Time, error) {
	if err := g.sync(); err != nil {
		return nil, err
	}
	return g.inner.Nonces(ctx, now)
}

// Ack, Secret and ForgetNonces touch keys no queued change writes (outbox
// entries already delivered, secrets, expired nonces): they go straight
// to inner.

func (g *groupStore) Ack(ctx context.Context, seqs []uint64) error { return g.inner.Ack(ctx, seqs) }

func (g *groupStore) Secret(ctx context.Context, name string) (string, error) {
	return g.inner.Secret(ctx, name)
}

func (g *groupStore) ForgetNonces(ctx context.Context, keys []string) error {
	return g.inner.ForgetNonces(ctx, keys)
}

// RememberNonce records the nonce with the next group of changes and
// returns once it is durable.
func (g *groupStore) RememberNonce(ctx context.Context, key string, forgetAt time.Time) error {
	return g.Commit(ctx, Change{Nonces: []NonceRecord{{Key: key, ForgetAt: forgetAt}}})
}

// Close writes what is queued, then closes inner.
func (g *groupStore) Close() error {
	syncErr := g.sync()
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	if err := g.inner.Close(); err != nil {
		return err
	}
	if syncErr != nil && !isClosed(syncErr) {
		return syncErr
	}
	return nil
}

// deferDurableKey marks a request context whose answer the router holds
// until its changes are durable ([Queue.serveHTTP]): commits made with it
// only apply their change and do not wait.
type deferDurableKey struct{}

func durabilityDeferred(ctx context.Context) bool {
	v, _ := ctx.Value(deferDurableKey{}).(bool)
	return v
}

// heldWriter holds an API answer until it may be sent: the status and the
// body are kept, the headers go to the real writer's map (sent with the
// status).
type heldWriter struct {
	w      http.ResponseWriter
	status int
	body   []byte
}

func (h *heldWriter) Header() http.Header { return h.w.Header() }

func (h *heldWriter) WriteHeader(code int) {
	if h.status == 0 {
		h.status = code
	}
}

func (h *heldWriter) Write(p []byte) (int, error) {
	if h.status == 0 {
		h.status = http.StatusOK
	}
	h.body = append(h.body, p...)
	return len(p), nil
}

// send writes the held answer.
func (h *heldWriter) send() {
	if h.status == 0 {
		h.status = http.StatusOK
	}
	h.w.WriteHeader(h.status)
	_, _ = h.w.Write(h.body)
}
