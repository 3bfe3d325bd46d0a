// Package slugid makes Taskcluster slug ids: 22-character URL-safe base64
// encodings of random (version 4) UUIDs, as used for taskIds and live-log
// access tokens.
package slugid

import (
	"crypto/rand"
	"encoding/base64"
	"regexp"
)

var pattern = regexp.MustCompile(`^[A-Za-z0-9_-]{8}[Q-T][A-Za-z0-9_-][CGKOSWaeimquy26-][A-Za-z0-9_-]{10}[AQgw]$`)

// Nice returns a new v4 slug id whose first character is a letter or digit
// (never '-'), which keeps it safe as a command-line argument.
func Nice() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("slugid: crypto/rand failed: " + err.Error()) // crypto/rand never fails on Linux
	}
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	b[0] &= 0x7f            // "nice": clear the top bit so the slug does not start with '-'
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Valid reports whether s is a well-formed v4 slug id.
func Valid(s string) bool { return pattern.MatchString(s) }
