package config

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// fuzzSecret is the value of the !env:secret variable the fuzzed documents
// may read; it must never appear in an error.
const fuzzSecret = "fuzz-s3cr3t-value"

// FuzzLoad: any document is loaded or refused without a panic. A loaded
// config is valid; a refusal lists problems that each name the file, and
// each a key unless the document as a whole is unusable (one problem); a
// secret read with !env:secret never shows in the error.
func FuzzLoad(f *testing.F) {
	for _, seed := range []string{
		good,
		identity + "workerId: w1\n",
		identity + "workerId: w1\ncapacity: !env:number CAP\nfeatures: !env:json FEATURES\nartifacts: {skipCompressionExtensions: !env:list SKIP}\n",
		identity + "workerId: w1\nssl: {key: !env:secret SECRET}\ncapacity: !env:secret SECRET\n",
		identity + "workerId: w1\ncapacity: !env:number SECRET\n",
		identity + "workerId: w1\ncapacity: 1.5\ntask: {reclaimDivisor: x}\nunknown: 1\n",
		"rootUrl: [1, 2]\ncapacity: {a: 1}\nworkerLocation: {a: [1, {b: null}]}\n",
		"a: &x {b: *x}\n",
		"base: &b {capacity: 2}\n<<: *b\n",
		"capacity: 1\ncapacity: 2\n",
		"- 1\n- 2\n",
		"just a string",
		"{",
		"",
		"~",
		"features: {bulkLog: {enabled: !env:bool NOPE}}\n",
		"devices: !unknown x\n",
		"workerLocation: !env:json FEATURES\n",
		"capacity: 99999999999999999999999\n",
		"dockerConfig: {randomizationFactor: .nan}\n",
		"\"\\x00\": 1\n",
	} {
		f.Add(seed)
	}
	vars := map[string]string{
		"CAP":      "8",
		"FEATURES": `{"bulkLog": {"enabled": true}}`,
		"SKIP":     `.zst ".tar gz"`,
		"SECRET":   fuzzSecret,
	}
	path := filepath.Join(f.TempDir(), "worker.yml")
	f.Fuzz(func(t *testing.T, doc string) {
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(path, env(vars))
		if err == nil {
			if c == nil {
				t.Fatal("Load returned neither a config nor an error")
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("Load accepted a config that does not validate: %v", err)
			}
			return
		}
		if c != nil {
			t.Fatalf("Load returned a config with the error %v", err)
		}
		if !readsSecretOtherwise(doc) && strings.Contains(err.Error(), fuzzSecret) {
			t.Fatalf("the error shows the secret:\n%v", err)
		}
		problems := problemsOf(err)
		if len(problems) == 0 {
			t.Fatalf("error %v holds no *Problem", err)
		}
		for _, p := range problems {
			if p.File != path {
				t.Errorf("problem %q names file %q, want %q", p.Error(), p.File, path)
			}
			if p.Key == "" && len(problems) > 1 {
				t.Errorf("problem %q names no key", p.Error())
			}
			if !strings.HasPrefix(p.Error(), path+": ") {
				t.Errorf("problem %q does not start with the file", p.Error())
			}
		}
	})
}

// secretTag matches reads of the SECRET variable as a secret.
var secretTag = regexp.MustCompile(`!env:secret[ \t\r\n]+["']?SECRET`)

// readsSecretOtherwise reports whether doc may show the secret's value by
// itself: it holds the value, or names its variable other than through
// !env:secret (a variable read with another tag is not a secret).
func readsSecretOtherwise(doc string) bool {
	return strings.Contains(doc, fuzzSecret) || strings.Contains(secretTag.ReplaceAllString(doc, ""), "SECRET")
}

// problemsOf returns the *Problem values err is made of (errors.Join of
// them, or one), or nil if any part is something else.
func problemsOf(err error) []*Problem {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []*Problem
		for _, e := range j.Unwrap() {
			p, ok := e.(*Problem)
			if !ok {
				return nil
			}
			out = append(out, p)
		}
		return out
	}
	var p *Problem
	if errors.As(err, &p) && error(p) == err {
		return []*Problem{p}
	}
	return nil
}
