package cache

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrInvalidName is wrapped by every error [ValidName] returns.
var ErrInvalidName = errors.New("invalid cache name")

// maxNameBytes is the longest name a directory entry may have on Linux
// file systems (NAME_MAX).
const maxNameBytes = 255

// invalidKeyMessage is docker-worker's message for a name containing "::"
// (its instance keys were "<name>::<instance>").
const invalidKeyMessage = `Invalid key name was provided.  Ensure that the cache name does not contain "::".`

// nameError carries a user-facing message and matches [ErrInvalidName].
type nameError struct{ msg string }

func (e *nameError) Error() string        { return e.msg }
func (e *nameError) Is(target error) bool { return target == ErrInvalidName }

// ValidName checks that name can name a cache: it becomes one directory
// below the cache root, so it must be a single, safe path element. A name
// containing "::" gets docker-worker's message; the others say what is
// wrong. The error matches [ErrInvalidName].
func ValidName(name string) error {
	bad := func(why string) error {
		return &nameError{fmt.Sprintf("Invalid cache name %q: %s.", name, why)}
	}
	switch {
	case strings.Contains(name, "::"):
		return &nameError{invalidKeyMessage}
	case name == "":
		return bad("the name is empty")
	case name == "." || name == "..":
		return bad(`"." and ".." are not allowed`)
	case strings.ContainsAny(name, `/\`):
		return bad("a cache name must not contain a slash or a backslash")
	case strings.Contains(name, ":"):
		return bad("a cache name must not contain a colon (it would end the host path of the bind mount)")
	case len(name) > maxNameBytes:
		return bad(fmt.Sprintf("a cache name has at most %d bytes", maxNameBytes))
	case !utf8.ValidString(name) || strings.IndexFunc(name, unicode.IsControl) >= 0:
		return bad("a cache name must not contain control characters or invalid UTF-8")
	}
	return nil
}
