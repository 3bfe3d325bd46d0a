package localqueue

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The durable store is one bbolt file: a copy-on-write B+tree whose every
// committed transaction is fsynced before Commit returns, so a crash (kill
// -9, power loss) at any point leaves the last committed state intact and
// nothing half-written. bbolt is pure Go, needs no server and no cgo, and
// one file with one writer at a time is exactly the embedded queue's
// access pattern (the Queue serialises its writes anyway).

var (
	bucketTasks = []byte("tasks")
	// The runs' artifacts, keyed by artifactKey (taskId/runId/name), so
	// that a run's artifacts are one name-ordered cursor range. Stores
	// written before this bucket existed kept them inside the task
	// records; OpenBoltStore moves them here.
	bucketArtifacts = []byte("artifacts")
	bucketObjects   = []byte("objects")
	bucketOutbox    = []byte("outbox")
	bucketSecrets   = []byte("secrets")
	// The index service: entries and namespaces keyed by childKey, so that
	// the children of a namespace are one cursor range.
	bucketIndexed    = []byte("index-tasks")
	bucketNamespaces = []byte("index-namespaces")
	// The purge-cache service's requests, keyed by PurgeRecord.Key.
	bucketPurges = []byte("purge-requests")
	// Hawk nonces seen within the clock-skew window: key → when it may be
	// forgotten (big-endian Unix milliseconds).
	bucketNonces = []byte("hawk-nonces")
)

// boltStore is a [Store] in a bbolt file.
type boltStore struct {
	db *bolt.DB
}

// OpenBoltStore opens (creating if needed) the durable store at path. The
// file is locked: a second process opening the same path waits up to 5
// seconds and then fails, so two queues never share one store.
func OpenBoltStore(path string) (Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("localqueue: store directory: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("localqueue: open store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketArtifacts) == nil {
			if err := migrateArtifacts(tx); err != nil {
				return fmt.Errorf("move artifacts out of the task records: %w", err)
			}
		}
		for _, b := range [][]byte{bucketTasks, bucketArtifacts, bucketObjects, bucketOutbox, bucketSecrets, bucketIndexed, bucketNamespaces, bucketPurges, bucketNonces} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("localqueue: initialise store %s: %w", path, err)
	}
	// Hawk nonces are written one per request through db.Batch; a short
	// delay still lets concurrent requests share one fsync.
	db.MaxBatchDelay = time.Millisecond
	return &boltStore{db: db}, nil
}

// migrateArtifacts moves the artifacts that task records of an older store
// hold (runs[].artifacts, a map by name) into bucketArtifacts, and rewrites
// those records without them, in tx: all of them or, after a crash, none.
func migrateArtifacts(tx *bolt.Tx) error {
	arts, err := tx.CreateBucket(bucketArtifacts)
	if err != nil {
		return err
	}
	tasks := tx.Bucket(bucketTasks)
	if tasks == nil {
		return nil // a new store
	}
	type legacyRuns struct {
		Runs []struct {
			Artifacts map[string]*ArtifactRecord `json:"artifacts"`
		} `json:"runs"`
	}
	rewrite := map[string][]byte{}
	err = tasks.ForEach(func(k, v []byte) error {
		var old legacyRuns
		if err := unmarshalRecord(v, &old); err != nil {
			return fmt.Errorf("task %s: %w", k, err)
		}
		moved := false
		for runID, r := range old.Runs {
			for name, a := range r.Artifacts {
				a.TaskID, a.RunID, a.Name = string(k), runID, name
				b, err := marshalRecord(a)
				if err != nil {
					return fmt.Errorf("encode artifact %q of %s/%d: %w", name, k, runID, err)
				}
				if err := arts.Put([]byte(a.key()), b); err != nil {
					return fmt.Errorf("store artifact %q of %s/%d: %w", name, k, runID, err)
				}
				moved = true
			}
		}
		if !moved {
			return nil
		}
		// RunRecord has no artifacts field any more: a round trip drops
		// them and keeps the rest.
		var rec TaskRecord
		if err := unmarshalRecord(v, &rec); err != nil {
			return fmt.Errorf("task %s: %w", k, err)
		}
		b, err := marshalRecord(&rec)
		if err != nil {
			return fmt.Errorf("encode task %s: %w", k, err)
		}
		rewrite[string(k)] = b
		return nil
	})
	if err != nil {
		return err
	}
	// A bucket must not change during its ForEach.
	for k, v := range rewrite {
		if err := tasks.Put([]byte(k), v); err != nil {
			return fmt.Errorf("store task %s: %w", k, err)
		}
	}
	return nil
}

func (s *boltStore) view(fn func(*bolt.Tx) error) error {
	err := s.db.View(fn)
	if errors.Is(err, bolt.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

func (s *boltStore) update(fn func(*bolt.Tx) error) error {
	err := s.db.Update(fn)
	if errors.Is(err, bolt.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

func (s *boltStore) Get(_ context.Context, taskID string) (*TaskRecord, error) {
	var rec TaskRecord
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTasks).Get([]byte(taskID))
		if b == nil {
			return fmt.Errorf("task %s: %w", taskID, ErrNotFound)
		}
		return unmarshalRecord(b, &rec)
	})
	if err != nil {
		return nil, err
	}
	return &rec, nil
}

func (s *boltStore) Each(ctx context.Context, fn func(*TaskRecord) error) error {
	// Decode everything first, so fn runs outside the read transaction.
	var recs []*TaskRecord
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTasks).ForEach(func(k, v []byte) error {
			var rec TaskRecord
			if err := unmarshalRecord(v, &rec); err != nil {
				return fmt.Errorf("task %s: %w", k, err)
			}
			recs = append(recs, &rec)
			return ctx.Err()
		})
	})
	if err != nil {
		return err
	}
	for _, rec := range recs {
		if err := fn(rec); err != nil {
			return err
		}
	}
	return nil
}

func (s *boltStore) Artifact(_ context.Context, taskID string, runID int, name string) (*ArtifactRecord, error) {
	var a ArtifactRecord
	if err := s.getOne(bucketArtifacts, artifactKey(taskID, runID, name), fmt.Sprintf("artifact %q of %s/%d", name, taskID, runID), &a); err != nil {
		return nil, err
	}
	return &a, nil
}

func (s *boltStore) Artifacts(_ context.Context, taskID string, runID int, after string, limit int) ([]*ArtifactRecord, error) {
	return boltRange[ArtifactRecord](s, bucketArtifacts, runArtifactsPrefix(taskID, runID), after, limit)
}

func (s *boltStore) Object(_ context.Context, name string) (*ObjectRecord, error) {
	var o ObjectRecord
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketObjects).Get([]byte(name))
		if b == nil {
			return fmt.Errorf("object %q: %w", name, ErrNotFound)
		}
		return unmarshalRecord(b, &o)
	})
	if err != nil {
		return nil, err
	}
	return &o, nil
}

func (s *boltStore) Commit(_ context.Context, c Change) error {
	return s.update(func(tx *bolt.Tx) error { return commitChange(tx, c) })
}

// CommitBatch applies the changes in order in one transaction: one write
// of the changed pages and one fsync for all of them.
func (s *boltStore) CommitBatch(_ context.Context, cs []Change) error {
	return s.update(func(tx *bolt.Tx) error {
		for _, c := range cs {
			if err := commitChange(tx, c); err != nil {
				return err
			}
		}
		return nil
	})
}

// commitChange writes c in tx.
func commitChange(tx *bolt.Tx, c Change) error {
	tasks := tx.Bucket(bucketTasks)
	for _, rec := range c.Tasks {
		b, err := marshalRecord(rec)
		if err != nil {
			return fmt.Errorf("encode task %s: %w", rec.TaskID, err)
		}
		if err := tasks.Put([]byte(rec.TaskID), b); err != nil {
			return fmt.Errorf("store task %s: %w", rec.TaskID, err)
		}
	}
	if err := putAll(tx.Bucket(bucketArtifacts), c.Artifacts, (*ArtifactRecord).key); err != nil {
		return err
	}
	objects := tx.Bucket(bucketObjects)
	for _, o := range c.Objects {
		b, err := marshalRecord(o)
		if err != nil {
			return fmt.Errorf("encode object %q: %w", o.Name, err)
		}
		if err := objects.Put([]byte(o.Name), b); err != nil {
			return fmt.Errorf("store object %q: %w", o.Name, err)
		}
	}
	if err := putAll(tx.Bucket(bucketIndexed), c.IndexedTasks, func(r *IndexedTaskRecord) string { return childKey(r.Path) }); err != nil {
		return err
	}
	if err := putAll(tx.Bucket(bucketNamespaces), c.Namespaces, func(n *NamespaceRecord) string { return childKey(n.Path) }); err != nil {
		return err
	}
	if err := putAll(tx.Bucket(bucketPurges), c.PurgeRequests, (*PurgeRecord).Key); err != nil {
		return err
	}
	for _, path := range c.DeleteIndexedTasks {
		if err := tx.Bucket(bucketIndexed).Delete([]byte(childKey(path))); err != nil {
			return fmt.Errorf("delete indexed task %q: %w", path, err)
		}
	}
	for _, n := range c.Nonces {
		if err := tx.Bucket(bucketNonces).Put([]byte(n.Key), nonceValue(n.ForgetAt)); err != nil {
			return fmt.Errorf("store nonce: %w", err)
		}
	}
	outbox := tx.Bucket(bucketOutbox)
	for _, m := range c.Messages {
		seq, err := outbox.NextSequence()
		if err != nil {
			return fmt.Errorf("outbox sequence: %w", err)
		}
		b, err := marshalRecord(m)
		if err != nil {
			return fmt.Errorf("encode message: %w", err)
		}
		if err := outbox.Put(seqKey(seq), b); err != nil {
			return fmt.Errorf("store message: %w", err)
		}
	}
	return nil
}

// putAll stores each record of recs under key(record).
func putAll[R any](b *bolt.Bucket, recs []R, key func(R) string) error {
	for _, r := range recs {
		v, err := marshalRecord(r)
		if err != nil {
			return fmt.Errorf("encode %q: %w", key(r), err)
		}
		if err := b.Put([]byte(key(r)), v); err != nil {
			return fmt.Errorf("store %q: %w", key(r), err)
		}
	}
	return nil
}

// getOne decodes the record stored under key in bucket into v.
func (s *boltStore) getOne(bucket []byte, key, what string, v any) error {
	return s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket).Get([]byte(key))
		if b == nil {
			return fmt.Errorf("%s: %w", what, ErrNotFound)
		}
		return unmarshalRecord(b, v)
	})
}

// boltRange decodes the records of bucket whose keys start with prefix and
// sort after prefix+after, in key order, at most limit of them (all when
// limit is below 1).
func boltRange[R any](s *boltStore, bucket []byte, prefix, after string, limit int) ([]*R, error) {
	var out []*R
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		p := []byte(prefix)
		k, v := c.Seek(p)
		if after != "" {
			start := []byte(prefix + after)
			k, v = c.Seek(start)
			if k != nil && string(k) == string(start) {
				k, v = c.Next()
			}
		}
		for ; k != nil && bytes.HasPrefix(k, p) && (limit < 1 || len(out) < limit); k, v = c.Next() {
			r := new(R)
			if err := unmarshalRecord(v, r); err != nil {
				return fmt.Errorf("%q: %w", k, err)
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

func (s *boltStore) IndexedTask(_ context.Context, path string) (*IndexedTaskRecord, error) {
	var r IndexedTaskRecord
	if err := s.getOne(bucketIndexed, childKey(path), fmt.Sprintf("indexed task %q", path), &r); err != nil {
		return nil, err
	}
	return &r, nil
}

func (s *boltStore) Namespace(_ context.Context, path string) (*NamespaceRecord, error) {
	var n NamespaceRecord
	if err := s.getOne(bucketNamespaces, childKey(path), fmt.Sprintf("namespace %q", path), &n); err != nil {
		return nil, err
	}
	return &n, nil
}

func (s *boltStore) IndexedTasks(_ context.Context, namespace, after string, limit int) ([]*IndexedTaskRecord, error) {
	return boltRange[IndexedTaskRecord](s, bucketIndexed, namespace+"\x00", after, limit)
}

func (s *boltStore) Namespaces(_ context.Context, parent, after string, limit int) ([]*NamespaceRecord, error) {
	return boltRange[NamespaceRecord](s, bucketNamespaces, parent+"\x00", after, limit)
}

func (s *boltStore) PurgeRequests(_ context.Context, workerPoolID, after string, limit int) ([]*PurgeRecord, error) {
	prefix := ""
	if workerPoolID != "" {
		prefix = workerPoolID + "\x00"
		after = strings.TrimPrefix(after, prefix)
	}
	return boltRange[PurgeRecord](s, bucketPurges, prefix, after, limit)
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

func (s *boltStore) Outbox(_ context.Context, limit int) ([]OutboxEntry, error) {
	var out []OutboxEntry
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketOutbox).Cursor()
		for k, v := c.First(); k != nil && len(out) < limit; k, v = c.Next() {
			var m Message
			if err := unmarshalRecord(v, &m); err != nil {
				return fmt.Errorf("outbox message %x: %w", k, err)
			}
			out = append(out, OutboxEntry{Seq: binary.BigEndian.Uint64(k), Message: m})
		}
		return nil
	})
	return out, err
}

func (s *boltStore) Ack(_ context.Context, seqs []uint64) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOutbox)
		for _, seq := range seqs {
			if err := b.Delete(seqKey(seq)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *boltStore) Secret(_ context.Context, name string) (string, error) {
	var v string
	err := s.view(func(tx *bolt.Tx) error {
		v = string(tx.Bucket(bucketSecrets).Get([]byte(name)))
		return nil
	})
	if err != nil || v != "" {
		return v, err
	}
	err = s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSecrets)
		if cur := b.Get([]byte(name)); cur != nil {
			v = string(cur)
			return nil
		}
		secret, err := newSecret()
		if err != nil {
			return err
		}
		v = secret
		return b.Put([]byte(name), []byte(secret))
	})
	return v, err
}

// RememberNonce goes through bbolt's batching: concurrent requests share
// one transaction and one fsync.
func (s *boltStore) RememberNonce(_ context.Context, key string, forgetAt time.Time) error {
	err := s.db.Batch(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketNonces).Put([]byte(key), nonceValue(forgetAt))
	})
	if errors.Is(err, bolt.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// nonceValue is how a nonce's forget time is stored.
func nonceValue(forgetAt time.Time) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(forgetAt.UnixMilli()))
}

func (s *boltStore) Nonces(_ context.Context, now time.Time) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketNonces)
		var expired [][]byte
		err := b.ForEach(func(k, v []byte) error {
			if len(v) == 8 {
				if at := time.UnixMilli(int64(binary.BigEndian.Uint64(v))); at.After(now) {
					out[string(k)] = at
					return nil
				}
			}
			expired = append(expired, bytes.Clone(k))
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range expired {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (s *boltStore) ForgetNonces(_ context.Context, keys []string) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketNonces)
		for _, k := range keys {
			if err := b.Delete([]byte(k)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *boltStore) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("localqueue: close store: %w", err)
	}
	return nil
}
