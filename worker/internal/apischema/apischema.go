// Package apischema is test support: it loads the published Taskcluster JSON
// schemas from the shared reference folder that sits beside the repository
// checkout and validates documents (request and response bodies) against
// them. Any package's tests may use it; production code must not.
//
// The schemas name each other by `$id` path (`/schemas/queue/v1/task.json#`)
// and declare `$schema: /schemas/common/metaschema.json#`; a custom loader
// maps those paths onto files under `<reference>/taskcluster-api/schemas/`.
package apischema

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// baseURL is the made-up absolute location the schemas are compiled under;
// their relative `$id`s resolve against it, and the loader only looks at the
// path part of what it is asked for.
const baseURL = "https://schemas.taskcluster.invalid/schemas/"

// Dir locates the `taskcluster-api` reference folder: it walks up from the
// working directory to the repository root (the first directory holding a
// go.mod) and looks for `shared/reference/taskcluster-api` beside it. The
// error wraps [fs.ErrNotExist] when the folder is absent.
func Dir() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("apischema: working directory: %w", err)
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			ref := filepath.Join(filepath.Dir(dir), "shared", "reference", "taskcluster-api")
			st, err := os.Stat(filepath.Join(ref, "schemas"))
			if err != nil {
				return "", fmt.Errorf("apischema: reference schemas beside repository root %s: %w", dir, err)
			}
			if !st.IsDir() {
				return "", fmt.Errorf("apischema: %s is not a directory: %w", ref, fs.ErrNotExist)
			}
			return ref, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("apischema: no go.mod above %s: %w", wd, fs.ErrNotExist)
		}
		dir = parent
	}
}

// Set validates documents against the schemas of one reference folder.
// It is safe for concurrent use; schemas are compiled on first use.
type Set struct {
	dir string

	mu       sync.Mutex
	compiler *jsonschema.Compiler
	compiled map[string]*jsonschema.Schema
}

// Open returns the Set for the reference folder found by [Dir]. When the
// folder is absent the test is skipped, unless the CI environment variable
// is set, in which case it fails: in CI the schema checks must not vanish.
func Open(t testing.TB) *Set {
	t.Helper()
	dir, err := Dir()
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("Taskcluster schemas not available (set CI to make this fatal): %v", err)
		}
		t.Fatalf("Taskcluster schemas not available: %v", err)
	}
	return Load(dir)
}

// Load returns a Set reading schemas from dir, a `taskcluster-api` reference
// folder (the one holding `schemas/`).
func Load(dir string) *Set {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	c.UseLoader(fileLoader{root: filepath.Join(dir, "schemas")})
	return &Set{dir: dir, compiler: c, compiled: map[string]*jsonschema.Schema{}}
}

// Validate checks doc, a JSON document, against the schema with the given
// id, e.g. `queue/v1/task-status-response.json`; a leading `/schemas/` and
// a trailing `#` are accepted too.
func (s *Set) Validate(schemaID string, doc []byte) error {
	id := normalizeID(schemaID)
	sch, err := s.schema(id)
	if err != nil {
		return err
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return fmt.Errorf("apischema: document for %s is not JSON: %w", id, err)
	}
	if err := sch.Validate(v); err != nil {
		return fmt.Errorf("apischema: %s: %w", id, err)
	}
	return nil
}

func normalizeID(id string) string {
	id = strings.TrimSuffix(id, "#")
	id = strings.TrimPrefix(id, "/")
	id = strings.TrimPrefix(id, "schemas/")
	return id
}

func (s *Set) schema(id string) (*jsonschema.Schema, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sch, ok := s.compiled[id]; ok {
		return sch, nil
	}
	sch, err := s.compiler.Compile(baseURL + id)
	if err != nil {
		return nil, fmt.Errorf("apischema: compile %s: %w", id, err)
	}
	s.compiled[id] = sch
	return sch, nil
}

// fileLoader serves `/schemas/...` paths (absolute URLs or bare paths, as
// the unresolved `$schema` value arrives) from files under root.
type fileLoader struct{ root string }

func (l fileLoader) Load(raw string) (any, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parse schema URL %q: %w", raw, err)
	}
	p := path.Clean("/" + u.Path)
	rel, ok := strings.CutPrefix(p, "/schemas/")
	if !ok {
		return nil, fmt.Errorf("schema URL %q is not under /schemas/: %w", raw, errors.ErrUnsupported)
	}
	f, err := os.Open(filepath.Join(l.root, filepath.FromSlash(rel)))
	if err != nil {
		return nil, fmt.Errorf("load schema %q: %w", raw, err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		return nil, fmt.Errorf("decode schema %q: %w", raw, err)
	}
	// `$schema` must be an absolute URI for the draft-06 metaschema (which is
	// checked with format assertions on); anchor the path-only form at baseURL.
	if obj, ok := doc.(map[string]any); ok {
		if ms, ok := obj["$schema"].(string); ok {
			if rest, ok := strings.CutPrefix(ms, "/schemas/"); ok {
				obj["$schema"] = baseURL + rest
			}
		}
	}
	return doc, nil
}
