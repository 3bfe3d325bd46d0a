package layout

import (
	"encoding/json"
	"fmt"
	"go/parser"
	"go/token"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "go.dockerworker.dev/docker-worker"

type pkg struct {
	ImportPath     string
	Dir            string
	Doc            string
	Name           string
	GoFiles        []string
	CgoFiles       []string
	TestGoFiles    []string
	XTestGoFiles   []string
	IgnoredGoFiles []string // excluded by build constraints; checked all the same
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", module+"/...")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(out)
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("go list: %v", err)
	}
	return pkgs
}

func TestEveryPackageHasADocComment(t *testing.T) {
	for _, p := range listPackages(t) {
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("%s has no package doc comment", p.ImportPath)
		}
	}
}

// rel is the import path inside the module ("" for the module root).
func rel(path string) (string, bool) {
	if path == module {
		return "", true
	}
	r, ok := strings.CutPrefix(path, module+"/")
	return r, ok
}

// match reports whether the module-relative package path matches pattern:
// elements match literally, "*" matches any one element, and a final "..."
// matches zero or more elements ("worker/..." is worker and everything
// below it; "worker/*/..." is everything below worker but not worker).
func match(pattern, path string) bool {
	pe := strings.Split(pattern, "/")
	se := strings.Split(path, "/")
	for i, e := range pe {
		if e == "..." && i == len(pe)-1 {
			return true
		}
		if i >= len(se) || (e != "*" && e != se[i]) {
			return false
		}
	}
	return len(se) == len(pe)
}

func matchAny(patterns []string, path string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool { return match(p, path) })
}

// rule says what the packages matching pkg may import. Imports of the
// package itself (an external _test package importing the package under
// test) are always allowed.
type rule struct {
	pkg string // importing packages, a pattern for match
	// allow are the module packages any file of the package may import.
	allow []string
	// tests are further module packages its _test.go files may import
	// (on top of testHelpers).
	tests []string
	// stdlibOnly forbids third-party modules outside _test.go files.
	stdlibOnly bool
	// why is the layering reason, quoted in failures.
	why string
}

// featureDeps are the leaf worker packages a feature may build on.
var featureDeps = []string{
	"features", "schemas",
	"worker/livelog", "worker/artifacts", "worker/cache", "worker/devices", "worker/taskerr",
	"worker/metrics", "worker/tasklog", "worker/scopes", "worker/docker", "worker/flight",
	// the in-process Taskcluster proxy the taskclusterProxy feature serves
	"worker/tcproxy",
}

// testHelpers may be imported by any package's _test.go files.
var testHelpers = []string{"worker/docker/dockertest", "worker/docker/dockerfake", "worker/pulse/pulsetest", "features/featuretest", "test/faultproxy"}

// rules is the import allow-list; the first rule whose pkg matches the
// importing package applies, and a package no rule matches is an error.
var rules = []rule{
	{pkg: "cmd/...", allow: []string{"..."},
		why: "cmd wires the whole worker"},
	{pkg: "test/...", allow: []string{"..."},
		why: "end-to-end and repository tests drive the whole worker"},
	{pkg: "features", allow: []string{"schemas"}, stdlibOnly: true,
		why: "the feature contract uses neutral types only: schemas and the standard library"},
	{pkg: "features/featuretest", allow: featureDeps,
		why: "the feature harness stands in for the worker core, seen through the contract"},
	{pkg: "features/internal/...", allow: featureDeps,
		why: "helpers shared by features import what a feature may"},
	{pkg: "features/*", allow: append([]string{"features/internal/..."}, featureDeps...),
		why: "a feature imports the contract, schemas and leaf worker packages, never the core or another feature"},
	{pkg: "worker/wiring", allow: []string{"features", "features/*", "schemas", "worker", "worker/*/..."},
		why: "the wiring package builds the worker and its feature list for cmd and the tests"},
	{pkg: "worker", allow: []string{"features", "schemas", "worker/*/..."},
		// The runner tier runs the real worker with the built-in features
		// production workers have (task log, image).
		tests: []string{"features/backinglog", "features/image", "features/cache", "features/dind", "features/allowPtrace", "features/capabilities", "features/devices"},
		why:   "the worker core imports the feature contract only, never a feature"},
	{pkg: "worker/status", allow: []string{"features", "schemas", "worker/*/..."},
		why: "the status endpoint is a worker extension: it implements the contract's Extension and observes run events, and imports no feature"},
	{pkg: "worker/*/...", allow: []string{"schemas", "worker/*/..."},
		why: "leaf worker packages import neither the core nor the feature contract nor features"},
	{pkg: "schemas/...", allow: nil,
		why: "schemas depends on nothing else in the module"},
}

// forbidden applies on top of rules, to every package not in except (and,
// with tests set, to non-test files only).
var forbidden = []struct {
	imp    string
	except []string
	tests  bool
	why    string
}{
	{imp: "cmd/...", why: "nothing imports cmd"},
	{imp: "worker/internal/...", except: []string{"worker/..."},
		why: "worker/internal is private to worker/..., not for features"},
	{imp: "worker/wiring", except: []string{"cmd/...", "test/..."},
		why: "only cmd and the tests build a whole worker"},
	{imp: "worker/docker/dockertest", except: []string{"test/..."}, tests: true,
		why: "test helpers are for _test.go files"},
	{imp: "worker/docker/dockerfake", except: []string{"test/..."}, tests: true,
		why: "test helpers are for _test.go files"},
	{imp: "worker/pulse/pulsetest", except: []string{"test/..."}, tests: true,
		why: "test helpers are for _test.go files"},
	{imp: "features/featuretest", except: []string{"test/..."}, tests: true,
		why: "test helpers are for _test.go files"},
	{imp: "test/faultproxy", except: []string{"test/..."}, tests: true,
		why: "test helpers are for _test.go files"},
}

// knownViolations are imports that break the rules today, as
// "<importing file>: <import path>" with the file relative to the module
// root. Each is logged; an entry that no longer occurs is an error, so the
// list only shrinks.
var knownViolations = []string{}

// isStdlib reports whether path is a standard library package: its first
// element has no dot.
func isStdlib(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

// checkImport returns why package from (module-relative) may not import
// imp in a test file (test) or a non-test file, or "" if it may.
func checkImport(from, imp string, test bool) string {
	to, inModule := rel(imp)
	if !inModule {
		if isStdlib(imp) {
			return ""
		}
	}
	var r *rule
	for i := range rules {
		if match(rules[i].pkg, from) {
			r = &rules[i]
			break
		}
	}
	if r == nil {
		return fmt.Sprintf("no import rule covers package %q; add one to rules in test/layout", from)
	}
	if !inModule {
		if r.stdlibOnly && !test {
			return "third-party module: " + r.why
		}
		return ""
	}
	for _, f := range forbidden {
		if match(f.imp, to) && !matchAny(f.except, from) && !(f.tests && test) {
			return f.why
		}
	}
	if to == from || matchAny(r.allow, to) {
		return ""
	}
	if test && (matchAny(r.tests, to) || matchAny(testHelpers, to)) {
		return ""
	}
	return r.why
}

// TestImportRuleTable checks the rules themselves on imports that must be
// refused or allowed.
func TestImportRuleTable(t *testing.T) {
	m := func(p string) string { return module + "/" + p }
	for _, tc := range []struct {
		from, imp string
		test      bool
		ok        bool
	}{
		{"cmd/docker-worker", m("features/artifacts"), false, true},
		{"cmd/docker-worker", m("cmd/other"), false, false},
		{"test/e2e", m("features/backinglog"), true, true},
		{"test/e2e", m("cmd/docker-worker"), true, false},
		{"test/e2e", m("worker/internal/apischema"), true, false},
		{"features", m("schemas"), false, true},
		{"features", m("worker/tasklog"), false, false},
		{"features", "github.com/google/go-cmp/cmp", false, false},
		{"features", "github.com/google/go-cmp/cmp", true, true},
		{"features/artifacts", m("worker/artifacts"), false, true},
		{"features/artifacts", m("worker/docker"), false, true},
		{"features/artifacts", m("worker"), false, false},
		{"features/artifacts", m("worker"), true, false},
		{"features/artifacts", m("worker/config"), false, false},
		{"features/artifacts", m("worker/tc"), true, false},
		{"features/artifacts", m("features/backinglog"), false, false},
		{"features/artifacts", m("features/backinglog"), true, false},
		{"features/artifacts", m("features/featuretest"), false, false},
		{"features/artifacts", m("features/featuretest"), true, true},
		{"features/artifacts", m("worker/internal/apischema"), false, false},
		{"features/artifacts", "github.com/google/go-cmp/cmp", false, true},
		{"features/featuretest", m("features"), false, true},
		{"features/featuretest", m("features/artifacts"), false, false},
		{"worker", m("features"), false, true},
		{"worker", m("features/backinglog"), false, false},
		{"worker", m("features/backinglog"), true, true},
		{"worker", m("features/artifacts"), true, false},
		{"worker", m("features/featuretest"), true, true},
		{"worker", m("worker/internal/apischema"), false, true},
		{"worker", m("worker/wiring"), false, false},
		{"worker/wiring", m("features/backinglog"), false, true},
		{"worker/wiring", m("worker"), false, true},
		{"worker/tc", m("worker"), false, false},
		{"worker/tc", m("features"), false, false},
		{"worker/tc", m("features/artifacts"), true, false},
		{"worker/localqueue", m("worker/internal/apischema"), true, true},
		{"worker/localqueue/pulse", m("worker/localqueue"), false, true},
		{"worker/docker", m("worker/docker/dockertest"), true, true},
		{"worker/docker", m("worker/docker/dockertest"), false, false},
		{"worker", m("worker/docker/dockerfake"), true, true},
		{"worker", m("worker/docker/dockerfake"), false, false},
		{"schemas", m("worker/tc"), false, false},
		{"schemas", "gopkg.in/yaml.v3", true, true},
		{"nowhere", "fmt", false, true},
		{"nowhere", m("schemas"), false, false},
	} {
		got := checkImport(tc.from, tc.imp, tc.test)
		if (got == "") != tc.ok {
			t.Errorf("%s (test file %v) importing %s: got %q, want allowed=%v", tc.from, tc.test, tc.imp, got, tc.ok)
		}
	}
}

// TestImportRules checks every import of every Go file in the module,
// test files included, against rules.
func TestImportRules(t *testing.T) {
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatal(err)
	}
	modDir := strings.TrimSpace(string(root))
	known := map[string]bool{}
	for _, k := range knownViolations {
		known[k] = false
	}
	fset := token.NewFileSet()
	for _, p := range listPackages(t) {
		from, _ := rel(p.ImportPath)
		files := slices.Concat(p.GoFiles, p.CgoFiles, p.TestGoFiles, p.XTestGoFiles, p.IgnoredGoFiles)
		for _, name := range files {
			path := filepath.Join(p.Dir, name)
			f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
			if err != nil {
				t.Errorf("parse %s: %v", path, err)
				continue
			}
			file, err := filepath.Rel(modDir, path)
			if err != nil {
				t.Fatal(err)
			}
			file = filepath.ToSlash(file)
			test := strings.HasSuffix(name, "_test.go")
			for _, spec := range f.Imports {
				imp, err := strconv.Unquote(spec.Path.Value)
				if err != nil {
					t.Errorf("%s: bad import %s", file, spec.Path.Value)
					continue
				}
				why := checkImport(from, imp, test)
				if why == "" {
					continue
				}
				key := file + ": " + imp
				if _, ok := known[key]; ok {
					known[key] = true
					t.Logf("known violation: %s imports %s: %s", file, imp, why)
					continue
				}
				t.Errorf("%s imports %s: %s", file, imp, why)
			}
		}
	}
	for _, k := range knownViolations {
		if !known[k] {
			t.Errorf("knownViolations lists %q, which no longer occurs: remove it", k)
		}
	}
}
