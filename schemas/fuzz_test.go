package schemas

import (
	"strings"
	"testing"
	"time"
)

// FuzzValidate checks that Validate never panics and always returns either
// a payload or at least one well-formed problem. Plain `go test` runs only
// the seed corpus; fuzz with `go test -run '^$' -fuzz FuzzValidate ./schemas/`.
func FuzzValidate(f *testing.F) {
	for _, tc := range payloadCases {
		f.Add([]byte(tc.json))
	}
	for _, s := range []string{``, `{`, `null`, `{"image":{"type":"task-image"}}`, `{"maxRunTime":1e999999}`,
		`{"image":"x","maxRunTime":1,"artifacts":{"a":{"type":"file","path":"/a","expires":"9999-12-31T23:59:60Z"}}}`} {
		f.Add([]byte(s))
	}
	if _, err := findReferenceDir(); err == nil {
		for _, np := range referencePayloads(f) {
			f.Add(np.raw)
		}
	}
	v, err := NewValidator()
	if err != nil {
		f.Fatal(err)
	}
	taskExpires := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw []byte) {
		p, probs := v.Validate(raw)
		if (p == nil) == (len(probs) == 0) {
			t.Fatalf("payload %v with problems %v", p, probs)
		}
		for _, pr := range probs {
			if !strings.HasPrefix(pr.Path, rootPath) || pr.Message == "" {
				t.Fatalf("malformed problem %q", pr)
			}
		}
		if p != nil {
			_ = CheckArtifactExpiry(p, taskExpires)
		}
	})
}
