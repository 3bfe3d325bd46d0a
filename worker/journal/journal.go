// Package journal keeps, on disk, what a worker process must know to clean
// up after itself if it dies: one entry per claimed run, holding the claim
// (task and run ids, the run's temporary credentials, takenUntil), the
// resolution the worker was about to report, and the task log written so
// far. A new process reads the entries a previous one left (Leftovers) and
// finishes their runs before claiming anything.
//
// Layout under the state directory (owner-only permissions throughout):
//
//	<dir>/lock                   held (flock) by the process using the journal
//	<dir>/id                     the directory's random identity
//	<dir>/runs/<taskId>-<runId>/claim.json
//	<dir>/runs/<taskId>-<runId>/task.log
//	<dir>/tmp/                   the process's scratch space, emptied at Open
//
// claim.json is replaced atomically (write, fsync, rename); task.log is
// appended unbuffered so that what the task printed before a SIGKILL is on
// disk.
package journal

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.dockerworker.dev/docker-worker/worker/slugid"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// Claim is what the journal records of one claimed run.
type Claim struct {
	TaskID      string         `json:"taskId"`
	RunID       int            `json:"runId"`
	WorkerGroup string         `json:"workerGroup"`
	WorkerID    string         `json:"workerId"`
	Credentials tc.Credentials `json:"credentials"`
	TakenUntil  time.Time      `json:"takenUntil"`
	// Expires is the task's expiry, for the artifacts a recovery uploads.
	Expires time.Time `json:"expires"`
	// LogName is the live log artifact name (payload.log; "" for the
	// default).
	LogName string `json:"logName,omitempty"`
	// Resolution is "completed", "failed" or "exception/<reason>" once the
	// run's artifacts are uploaded and the worker is about to report it.
	Resolution string `json:"resolution,omitempty"`
}

// Journal is one process's journal. Its methods are safe for concurrent
// use.
type Journal struct {
	dir  string
	id   string
	lock *os.File
}

// Open opens (creating it) the journal under dir, takes the directory's
// lock so that no second process uses it at the same time, and empties its
// scratch directory. The caller must Close it.
func Open(dir string) (*Journal, error) {
	if dir == "" {
		return nil, errors.New("journal: no state directory")
	}
	for _, d := range []string{dir, filepath.Join(dir, "runs"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("journal: %w", err)
		}
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("journal: state directory %s is in use by another worker process: %w", dir, err)
	}
	j := &Journal{dir: dir, lock: lock}
	if j.id, err = loadID(filepath.Join(dir, "id")); err != nil {
		j.Close()
		return nil, err
	}
	if err := j.emptyTemp(); err != nil {
		j.Close()
		return nil, err
	}
	return j, nil
}

// ID is the state directory's identity: a random name created with the
// directory and kept with it. The worker labels its containers with it, so
// that a process recovering its directory's runs never touches those of
// another worker that happens to have the same worker id.
func (j *Journal) ID() string { return j.id }

func loadID(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) >= 16 {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("journal: %w", err)
	}
	id := slugid.Nice()
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("journal: %w", err)
	}
	return id, nil
}

// Close releases the lock.
func (j *Journal) Close() error { return j.lock.Close() }

// Dir is the state directory.
func (j *Journal) Dir() string { return j.dir }

// TempDir is the process's scratch directory, emptied by Open: files a
// killed process left there are deleted by the next.
func (j *Journal) TempDir() string { return filepath.Join(j.dir, "tmp") }

func (j *Journal) emptyTemp() error {
	tmp := j.TempDir()
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(tmp, e.Name())); err != nil {
			return fmt.Errorf("journal: empty scratch directory: %w", err)
		}
	}
	return nil
}

func (j *Journal) runDir(taskID string, runID int) string {
	return filepath.Join(j.dir, "runs", taskID+"-"+strconv.Itoa(runID))
}

// Begin records a new claim and opens its task log. The claim's task id
// must be a slugid-like name (no path separators).
func (j *Journal) Begin(c Claim) (*Entry, error) {
	if c.TaskID == "" || strings.ContainsAny(c.TaskID, `/\`) || c.TaskID == "." || c.TaskID == ".." {
		return nil, fmt.Errorf("journal: bad task id %q", c.TaskID)
	}
	dir := j.runDir(c.TaskID, c.RunID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	e := &Entry{dir: dir, claim: c}
	if err := e.save(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, "task.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_TRUNC, 0o600)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("journal: %w", err)
	}
	e.log = f
	return e, nil
}

// Entry is one run's journal entry.
type Entry struct {
	dir string

	mu     sync.Mutex
	claim  Claim
	log    *os.File
	logErr error
	done   bool
}

// Write appends p to the run's task log on disk (an io.Writer for the task
// log's sinks). After a failed write it discards further writes and keeps
// returning the first error.
func (e *Entry) Write(p []byte) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.logErr != nil {
		return 0, e.logErr
	}
	if e.done {
		return len(p), nil
	}
	if _, err := e.log.Write(p); err != nil {
		e.logErr = fmt.Errorf("journal: task log: %w", err)
		return 0, e.logErr
	}
	return len(p), nil
}

// Reclaimed records the run's new credentials and takenUntil.
func (e *Entry) Reclaimed(creds tc.Credentials, takenUntil time.Time) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.done {
		return nil
	}
	e.claim.Credentials, e.claim.TakenUntil = creds, takenUntil
	return e.save()
}

// Resolving records the resolution the worker is about to report, so that
// a process that dies before the queue answers has its successor report
// the same one.
func (e *Entry) Resolving(resolution string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.done {
		return nil
	}
	e.claim.Resolution = resolution
	return e.save()
}

// Done deletes the entry: the run needs no recovery any more. It is
// idempotent.
func (e *Entry) Done() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.done {
		return nil
	}
	e.done = true
	e.log.Close()
	if err := os.RemoveAll(e.dir); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// save writes claim.json atomically; e.mu is held.
func (e *Entry) save() error {
	b, err := json.Marshal(e.claim)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	tmp, err := os.CreateTemp(e.dir, ".claim-*.json")
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	_, werr := tmp.Write(b)
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), filepath.Join(e.dir, "claim.json"))
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("journal: save claim: %w", werr)
	}
	return nil
}

// Leftover is an entry a previous process left.
type Leftover struct {
	Claim
	dir string
	// Err is set when the entry could not be read; Claim then holds what
	// its directory name says (task and run id).
	Err error
}

// LogPath is the leftover's task log file.
func (l Leftover) LogPath() string { return filepath.Join(l.dir, "task.log") }

// Remove deletes the leftover.
func (l Leftover) Remove() error {
	if err := os.RemoveAll(l.dir); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// Leftovers lists the entries in the journal. Call it before the first
// Begin: every entry then belongs to a previous process.
func (j *Journal) Leftovers() ([]Leftover, error) {
	root := filepath.Join(j.dir, "runs")
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	var out []Leftover
	for _, d := range ents {
		if !d.IsDir() {
			continue
		}
		l := Leftover{dir: filepath.Join(root, d.Name())}
		if i := strings.LastIndexByte(d.Name(), '-'); i > 0 {
			l.TaskID = d.Name()[:i]
			l.RunID, _ = strconv.Atoi(d.Name()[i+1:])
		}
		b, err := os.ReadFile(filepath.Join(l.dir, "claim.json"))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			l.Err = errors.New("journal: entry has no claim record")
		case err != nil:
			l.Err = fmt.Errorf("journal: %w", err)
		default:
			var c Claim
			if err := json.Unmarshal(b, &c); err != nil {
				l.Err = fmt.Errorf("journal: claim record of %s: %w", d.Name(), err)
			} else {
				l.Claim = c
			}
		}
		out = append(out, l)
	}
	return out, nil
}
