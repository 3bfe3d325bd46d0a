package localqueue

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"go.dockerworker.dev/docker-worker/worker/slugid"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// sizingStore records, for every change committed through it that stores
// an artifact, how many records of each kind it carries and its encoded
// size.
type sizingStore struct {
	Store
	mu      sync.Mutex
	changes []changeSize
}

type changeSize struct {
	tasks, artifacts, bytes int
}

func (s *sizingStore) Commit(ctx context.Context, c Change) error {
	if len(c.Artifacts) > 0 {
		b, err := json.Marshal(c)
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.changes = append(s.changes, changeSize{len(c.Tasks), len(c.Artifacts), len(b)})
		s.mu.Unlock()
	}
	return s.Store.Commit(ctx, c)
}

// Creating an artifact writes that artifact, not its run's others: the
// change stored for the 1000th artifact of a run is no larger than the one
// for the first.
func TestCreateArtifactChangeDoesNotGrow(t *testing.T) {
	store := &sizingStore{Store: NewMemStore()}
	e := newEnv(t, func(c *Config) { c.Store = store })
	c := e.claimOne(nil)
	a := &artifactEnv{env: e, taskID: c.Status.TaskID, creds: credsOf(c.Credentials), exp: formatTime(e.now().Add(24 * time.Hour))}
	const n = 1000
	for i := range n {
		// Names of one length, so that every change has the same size.
		a.create(fmt.Sprintf("public/dir/f%05d.txt", i), map[string]any{"storageType": "s3", "expires": a.exp, "contentType": "text/plain"})
	}
	store.mu.Lock()
	changes := slices.Clone(store.changes)
	store.mu.Unlock()
	if len(changes) != n {
		t.Fatalf("%d changes stored artifacts, want %d", len(changes), n)
	}
	first, last := changes[0], changes[n-1]
	if last.tasks != 0 || last.artifacts != 1 {
		t.Errorf("the %dth create stored %d task records and %d artifacts, want 0 and 1", n, last.tasks, last.artifacts)
	}
	// The nonce in each change varies a little in length.
	if last.bytes > first.bytes+16 {
		t.Errorf("the change of the %dth create is %d bytes, of the 1st %d: it grows with the run's artifacts", n, last.bytes, first.bytes)
	}
	var list listArtifactsResponse
	a.call("GET", runPath(a.taskID, 0, "/artifacts"), nil, nil, 200, "queue/v1/list-artifacts-response.json", &list)
	if len(list.Artifacts) != n || list.ContinuationToken != "" {
		t.Errorf("listArtifacts = %d artifacts, token %q; want %d, none", len(list.Artifacts), list.ContinuationToken, n)
	}
}

// Pages of listArtifacts skip unfinished object artifacts wherever they
// fall, on every store.
func TestListArtifactsSkipsUnfinished(t *testing.T) {
	for _, kind := range []string{"memory", "bbolt"} {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, func(c *Config) {
				if kind == "bbolt" {
					store, err := OpenBoltStore(filepath.Join(t.TempDir(), "queue.db"))
					if err != nil {
						t.Fatal(err)
					}
					c.Store = store
					t.Cleanup(func() { store.Close() })
				}
			})
			c := e.claimOne(nil)
			a := &artifactEnv{env: e, taskID: c.Status.TaskID, creds: credsOf(c.Credentials), exp: formatTime(e.now().Add(24 * time.Hour))}
			var want []string
			for i := range 7 {
				name := "public/r" + strconv.Itoa(i)
				a.create(name, map[string]any{"storageType": "reference", "expires": a.exp, "url": "https://example.com/" + name, "contentType": "text/plain"})
				want = append(want, name)
				for j := range i % 3 {
					a.create(name+"-obj"+strconv.Itoa(j), map[string]any{"storageType": "object", "expires": a.exp, "contentType": "text/plain"})
				}
			}
			a.create("public/z-obj", map[string]any{"storageType": "object", "expires": a.exp, "contentType": "text/plain"})
			for _, limit := range []int{1, 2, 3, 1000} {
				var got []string
				token := ""
				for pages := 0; ; pages++ {
					if pages > 10 {
						t.Fatal("pagination does not end")
					}
					q := url.Values{"limit": {strconv.Itoa(limit)}}
					if token != "" {
						q.Set("continuationToken", token)
					}
					var page listArtifactsResponse
					a.call("GET", runPath(a.taskID, 0, "/artifacts?"+q.Encode()), nil, nil, 200, "queue/v1/list-artifacts-response.json", &page)
					if len(page.Artifacts) > limit || (page.ContinuationToken != "" && len(page.Artifacts) != limit) {
						t.Fatalf("limit %d: page of %d artifacts, token %q", limit, len(page.Artifacts), page.ContinuationToken)
					}
					for _, art := range page.Artifacts {
						got = append(got, art.Name)
					}
					if token = page.ContinuationToken; token == "" {
						break
					}
				}
				if !slices.Equal(got, want) {
					t.Errorf("limit %d: listed %v, want %v", limit, got, want)
				}
			}
		})
	}
}

// A store written before artifacts had records of their own (they were a
// map in each run of the task record) opens with its artifacts moved out,
// and the queue answers for them as before.
func TestOpenBoltStoreMovesArtifactsOutOfTaskRecords(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "queue.db")
	openEnv := func() *env {
		store, err := OpenBoltStore(path)
		if err != nil {
			t.Fatal(err)
		}
		return newEnv(t, func(c *Config) { c.Store, c.DataDir = store, dir })
	}

	e := openEnv()
	c := e.claimOne(nil)
	a := &artifactEnv{env: e, taskID: c.Status.TaskID, creds: credsOf(c.Credentials), exp: formatTime(e.now().Add(24 * time.Hour))}
	other, _ := e.createTask(e.taskDef(testQueueID)) // no runs, no artifacts
	a.create("public/a.txt", map[string]any{"storageType": "s3", "expires": a.exp, "contentType": "text/plain", "contentLength": 5})
	a.create("public/ref", map[string]any{"storageType": "reference", "expires": a.exp, "url": "https://example.com/r", "contentType": "text/html"})
	a.create("public/link", map[string]any{"storageType": "link", "expires": a.exp, "artifact": "public/ref"})
	a.create("public/err", map[string]any{"storageType": "error", "expires": a.exp, "reason": "file-missing-on-worker", "message": "gone"})
	obj := a.create("public/obj", map[string]any{"storageType": "object", "expires": a.exp, "contentType": "text/plain"})
	listPath := runPath(a.taskID, 0, "/artifacts")
	wantList := a.call("GET", listPath, nil, nil, 200, "queue/v1/list-artifacts-response.json", nil)
	if err := e.q.Close(); err != nil {
		t.Fatal(err)
	}

	// Rewrite the file the way the previous version laid it out: each
	// artifact (without taskId and runId) in runs[runId].artifacts[name] of
	// its task's record, and no artifacts bucket.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	moved := 0
	err = db.Update(func(tx *bolt.Tx) error {
		tasks := tx.Bucket(bucketTasks)
		records := map[string]map[string]any{}
		err := tx.Bucket(bucketArtifacts).ForEach(func(k, v []byte) error {
			var art map[string]any
			if err := json.Unmarshal(v, &art); err != nil {
				return err
			}
			taskID, runID := art["taskId"].(string), int(art["runId"].(float64))
			delete(art, "taskId")
			delete(art, "runId")
			rec, ok := records[taskID]
			if !ok {
				if err := json.Unmarshal(tasks.Get([]byte(taskID)), &rec); err != nil {
					return err
				}
				records[taskID] = rec
			}
			run := rec["runs"].([]any)[runID].(map[string]any)
			if run["artifacts"] == nil {
				run["artifacts"] = map[string]any{}
			}
			run["artifacts"].(map[string]any)[art["name"].(string)] = art
			moved++
			return nil
		})
		if err != nil {
			return err
		}
		for id, rec := range records {
			b, err := json.Marshal(rec)
			if err != nil {
				return err
			}
			if err := tasks.Put([]byte(id), b); err != nil {
				return err
			}
		}
		return tx.DeleteBucket(bucketArtifacts)
	})
	if err == nil {
		err = db.Close()
	}
	if err != nil || moved != 5 {
		t.Fatalf("writing the old layout: %v (%d artifacts)", err, moved)
	}

	e = openEnv()
	a.env = e
	if got := a.call("GET", listPath, nil, nil, 200, "queue/v1/list-artifacts-response.json", nil); string(got) != string(wantList) {
		t.Errorf("listArtifacts after the migration:\n%s\nwant\n%s", got, wantList)
	}
	a.get("/task/" + a.taskID + "/artifacts/public/link")
	var info artifactJSON
	a.call("GET", runPath(a.taskID, 0, "/artifact-info/public/a.txt"), nil, nil, 200, "", &info)
	if info.ContentLength == nil || *info.ContentLength != 5 || info.StorageType != "s3" {
		t.Errorf("artifact info after the migration = %+v", info)
	}
	// The unfinished object artifact keeps its uploadId; a changed
	// reference is refused as before.
	if again := a.create("public/obj", map[string]any{"storageType": "object", "expires": a.exp, "contentType": "text/plain"}); again["uploadId"] != obj["uploadId"] {
		t.Errorf("uploadId after the migration = %v, want %v", again["uploadId"], obj["uploadId"])
	}
	a.createErr("public/ref", map[string]any{"storageType": "reference", "expires": a.exp, "url": "https://example.com/r", "contentType": "text/plain"}, codeRequestConflict)
	a.create("public/new", map[string]any{"storageType": "s3", "expires": a.exp, "contentType": "text/plain"})
	if st := e.status(other); st.TaskID != other {
		t.Errorf("status of %s = %+v", other, st)
	}
	if err := e.q.Close(); err != nil {
		t.Fatal(err)
	}

	db, err = bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		if n := tx.Bucket(bucketArtifacts).Stats().KeyN; n != 6 {
			t.Errorf("%d artifact records, want 6", n)
		}
		return tx.Bucket(bucketTasks).ForEach(func(k, v []byte) error {
			if strings.Contains(string(v), `"artifacts"`) {
				t.Errorf("task record %s still holds artifacts: %s", k, v)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// BenchmarkCreateArtifact creates artifacts one after another in one run,
// over HTTP, on a bbolt store, the run holding `have` artifacts before the
// first: the time of a create must not depend on have (or on b.N).
func BenchmarkCreateArtifact(b *testing.B) {
	for _, have := range []int{0, 10000} {
		b.Run("have="+strconv.Itoa(have), func(b *testing.B) {
			dir := b.TempDir()
			store, err := OpenBoltStore(filepath.Join(dir, "queue.db"))
			if err != nil {
				b.Fatal(err)
			}
			srv, root := benchQueue(b, store, dir)
			defer srv.Close()
			ctx := context.Background()
			client := tc.New(tc.Config{RootURL: root, Credentials: &adminCreds})
			now := time.Now().UTC()
			def, _ := json.Marshal(map[string]any{
				"taskQueueId": "bench/art", "created": now.Format(time.RFC3339Nano), "deadline": now.Add(time.Hour).Format(time.RFC3339Nano),
				"payload":  map[string]any{"image": "busybox", "command": []string{"true"}, "maxRunTime": 60},
				"metadata": map[string]any{"name": "b", "description": "b", "owner": "b@example.com", "source": "https://example.com/b"},
			})
			taskID := slugid.Nice()
			if _, err := client.CreateTask(ctx, taskID, def); err != nil {
				b.Fatal(err)
			}
			resp, err := client.ClaimWork(ctx, "bench/art", tc.ClaimWorkRequest{Tasks: 1, WorkerGroup: "wg", WorkerID: "w"})
			if err != nil || len(resp.Tasks) != 1 {
				b.Fatal("claimWork", err)
			}
			expires := now.Add(24 * time.Hour).Truncate(time.Millisecond)
			var pre Change
			for i := range have {
				pre.Artifacts = append(pre.Artifacts, &ArtifactRecord{
					TaskID: taskID, Name: fmt.Sprintf("public/old/f%06d.txt", i), StorageType: storageS3,
					ContentType: "text/plain", Expires: expires, Present: true,
				})
			}
			if err := srv.q.store.Commit(ctx, pre); err != nil {
				b.Fatal(err)
			}
			run := client.WithCredentials(resp.Tasks[0].Credentials)
			i := 0
			for b.Loop() {
				if _, err := run.CreateArtifact(ctx, taskID, 0, fmt.Sprintf("public/new/f%09d.txt", i), tc.S3Artifact(expires, "text/plain")); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
