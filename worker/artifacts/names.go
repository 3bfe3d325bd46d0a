package artifacts

import (
	"errors"
	"fmt"
	"strings"
)

// ErrBadArtifactName is wrapped by the errors of [CheckArtifactName].
var ErrBadArtifactName = errors.New("bad artifact name")

// CheckArtifactName reports why name cannot name an artifact, or nil. An
// artifact name is non-empty printable ASCII (0x20 to 0x7e): the object
// service stores nothing else, and a name with a NUL or a newline cannot
// travel in a URL path or a scope.
func CheckArtifactName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: it is empty", ErrBadArtifactName)
	}
	if i := strings.IndexFunc(name, func(r rune) bool { return r < 0x20 || r > 0x7e }); i >= 0 {
		return fmt.Errorf("%w: %q at byte %d is not printable ASCII (only 0x20 to 0x7e are allowed)", ErrBadArtifactName, firstRune(name[i:]), i)
	}
	return nil
}

// firstRune is the first character of s, or its first byte when s does not
// start with valid UTF-8.
func firstRune(s string) string {
	for _, r := range s {
		if r == '\uFFFD' && !strings.HasPrefix(s, "\uFFFD") {
			return s[:1]
		}
		return string(r)
	}
	return ""
}
