package schemas

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

// referenceSchemaFile is the docker-worker schema our payload.json mirrors:
// the final schema plus the dind and dockerSave features.
const referenceSchemaFile = "payload.v1.2025-09-10-before-dind-dockerSave-removal.yml"

// findReferenceDir locates the shared reference folder, which sits next to
// the repository checkout: <repo>/../shared/reference.
func findReferenceDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the test directory")
		}
		dir = parent
	}
	ref := filepath.Join(dir, "..", "shared", "reference")
	if _, err := os.Stat(ref); err != nil {
		return "", err
	}
	return ref, nil
}

// referenceDir returns the shared reference folder. Without it the test is
// skipped, unless the CI environment variable is set, in which case it fails.
func referenceDir(tb testing.TB) string {
	tb.Helper()
	ref, err := findReferenceDir()
	if err != nil {
		if os.Getenv("CI") == "" {
			tb.Skipf("reference folder not available: %v", err)
		}
		tb.Fatalf("reference folder is required when CI is set: %v", err)
	}
	return ref
}

// loadReferenceDoc reads the reference YAML schema as JSON-compatible values.
func loadReferenceDoc(tb testing.TB) any {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(referenceDir(tb), "schemas", referenceSchemaFile))
	if err != nil {
		tb.Fatal(err)
	}
	var y any
	if err := yaml.Unmarshal(b, &y); err != nil {
		tb.Fatalf("parse reference schema: %v", err)
	}
	j, err := json.Marshal(yamlToJSON(y))
	if err != nil {
		tb.Fatalf("convert reference schema: %v", err)
	}
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(string(j)))
	if err != nil {
		tb.Fatalf("decode converted reference schema: %v", err)
	}
	return doc
}

// yamlToJSON converts YAML-decoded values into values encoding/json accepts.
func yamlToJSON(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = yamlToJSON(e)
		}
		return m
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[fmt.Sprint(k)] = yamlToJSON(e)
		}
		return m
	case []any:
		a := make([]any, len(v))
		for i, e := range v {
			a[i] = yamlToJSON(e)
		}
		return a
	default:
		return v
	}
}

func referenceValidator(tb testing.TB) *Validator {
	tb.Helper()
	v, err := newValidatorFromDoc("https://reference.invalid/payload.yml", loadReferenceDoc(tb))
	if err != nil {
		tb.Fatalf("compile reference schema: %v", err)
	}
	return v
}

// namedPayload is one payload taken from a reference payload file.
type namedPayload struct {
	name string
	raw  []byte
}

// referencePayloads extracts every payload from the reference payload files.
// Each file holds {"_source","_notes","payload_or_task"}, where
// payload_or_task is a payload, a task definition (or {"payload": ...}), or
// an object of several such tasks.
func referencePayloads(tb testing.TB) []namedPayload {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join(referenceDir(tb), "payloads", "*.json"))
	if err != nil {
		tb.Fatal(err)
	}
	if len(files) == 0 {
		tb.Fatal("no reference payload files found")
	}
	var out []namedPayload
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		var file struct {
			PayloadOrTask json.RawMessage `json:"payload_or_task"`
		}
		if err := json.Unmarshal(b, &file); err != nil {
			tb.Fatalf("%s: %v", f, err)
		}
		found := extractPayloads(filepath.Base(f), file.PayloadOrTask)
		if len(found) == 0 {
			tb.Fatalf("%s: no payload found", f)
		}
		out = append(out, found...)
	}
	return out
}

func extractPayloads(name string, raw json.RawMessage) []namedPayload {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil
	}
	if p, ok := obj["payload"]; ok {
		return []namedPayload{{name: name, raw: p}}
	}
	if _, ok := obj["image"]; ok {
		return []namedPayload{{name: name, raw: raw}}
	}
	if _, ok := obj["maxRunTime"]; ok {
		return []namedPayload{{name: name, raw: raw}}
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []namedPayload
	for _, k := range keys {
		out = append(out, extractPayloads(name+"/"+k, obj[k])...)
	}
	return out
}

// fillPlaceholders replaces placeholder dates such as "<now+10min>" with a
// real date-time so the rest of the payload gets exercised.
func fillPlaceholders(tb testing.TB, raw []byte) []byte {
	tb.Helper()
	v, err := decodeJSON(raw)
	if err != nil {
		tb.Fatal(err)
	}
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				if s, ok := e.(string); ok && k == "expires" && strings.HasPrefix(s, "<") && strings.HasSuffix(s, ">") {
					v[k] = "2030-01-01T00:00:00.000Z"
					continue
				}
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(v)
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
