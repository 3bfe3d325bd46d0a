package layout

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "go.dockerworker.dev/docker-worker"

type pkg struct {
	ImportPath string
	Doc        string
	Imports    []string
	Name       string
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

// rel is the import path inside the module ("" for outside).
func rel(path string) (string, bool) {
	if path == module {
		return "", true
	}
	r, ok := strings.CutPrefix(path, module+"/")
	return r, ok
}

func TestImportRules(t *testing.T) {
	for _, p := range listPackages(t) {
		from, _ := rel(p.ImportPath)
		for _, imp := range p.Imports {
			to, ok := rel(imp)
			if !ok {
				continue
			}
			var bad string
			switch {
			case strings.HasPrefix(to, "cmd/"):
				bad = "nothing imports cmd"
			case from == "worker" && strings.HasPrefix(to, "features/"):
				bad = "the worker core imports only the feature contract, never a feature"
			case strings.HasPrefix(from, "worker/") && (to == "worker" || to == "features" || strings.HasPrefix(to, "features/")):
				bad = "leaf worker packages import neither the core nor features"
			case strings.HasPrefix(from, "features/") && from != "features/featuretest" && (to == "worker" || strings.HasPrefix(to, "features/") && to != "features/featuretest"):
				bad = "a feature imports the contract and leaf worker packages, not the core or other features"
			case from == "features" && (to == "worker" || strings.HasPrefix(to, "worker/")):
				bad = "the contract uses neutral types only"
			}
			if bad != "" {
				t.Errorf("%s imports %s: %s", p.ImportPath, imp, bad)
			}
		}
	}
}
