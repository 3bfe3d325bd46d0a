package tc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"
)

// APIError is a non-2xx answer from a Taskcluster service (or from a
// presigned storage URL). Code and Message come from the Taskcluster JSON
// error body when there is one; otherwise Code is empty and Message holds
// the start of the body.
type APIError struct {
	StatusCode    int
	Code, Message string
	Method, URL   string
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %d", e.Method, e.URL, e.StatusCode)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	} else if t := http.StatusText(e.StatusCode); t != "" {
		b.WriteString(" " + t)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	return b.String()
}

// snippetLen bounds how much of a non-JSON error body ends up in Message.
const snippetLen = 512

// newAPIError builds an APIError from a response status and body.
func newAPIError(method, rawURL string, status int, body []byte) *APIError {
	e := &APIError{StatusCode: status, Method: method, URL: rawURL}
	var tcErr struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &tcErr) == nil && tcErr.Code != "" {
		e.Code, e.Message = tcErr.Code, tcErr.Message
		return e
	}
	e.Message = snippet(body)
	return e
}

// snippet returns the first snippetLen bytes of body, trimmed and cut on a
// UTF-8 boundary.
func snippet(body []byte) string {
	body = bytes.TrimSpace(body)
	if len(body) <= snippetLen {
		return string(body)
	}
	cut := snippetLen
	for cut > 0 && !utf8.RuneStart(body[cut]) {
		cut--
	}
	return string(body[:cut]) + "…"
}

// StatusCode returns the HTTP status of the APIError in err's chain, or 0.
func StatusCode(err error) int {
	var e *APIError
	if errors.As(err, &e) {
		return e.StatusCode
	}
	return 0
}

// IsConflict reports whether err is a 409 (RequestConflict) answer, e.g. a
// report on a run that is already resolved.
func IsConflict(err error) bool { return StatusCode(err) == http.StatusConflict }

// IsNotFound reports whether err is a 404 (ResourceNotFound) answer.
func IsNotFound(err error) bool { return StatusCode(err) == http.StatusNotFound }
