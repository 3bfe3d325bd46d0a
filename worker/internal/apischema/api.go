package apischema

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Entry is one method of a service's api.json reference.
type Entry struct {
	Service string
	Name    string
	Method  string // upper case
	Route   string // as in api.json, e.g. /task/<taskId>/status
	// Input and Output are schema ids (e.g. queue/v1/task.json), or "".
	Input, Output string
	// Scopes is the route's scope expression, as in api.json (nil: none).
	Scopes json.RawMessage
	// Query lists the query parameters the method accepts.
	Query []string
	re    *regexp.Regexp
}

// API is the methods of one or more services.
type API struct {
	Entries []Entry
}

// LoadAPI reads references/<service>/v1/api.json of each service from the
// reference folder dir (see [Dir]).
func LoadAPI(dir string, services ...string) (*API, error) {
	api := &API{}
	for _, svc := range services {
		b, err := os.ReadFile(filepath.Join(dir, "references", svc, "v1", "api.json"))
		if err != nil {
			return nil, fmt.Errorf("apischema: %w", err)
		}
		var doc struct {
			Entries []struct {
				Name   string          `json:"name"`
				Method string          `json:"method"`
				Route  string          `json:"route"`
				Input  string          `json:"input"`
				Output string          `json:"output"`
				Scopes json.RawMessage `json:"scopes"`
				Query  []string        `json:"query"`
			} `json:"entries"`
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			return nil, fmt.Errorf("apischema: %s api.json: %w", svc, err)
		}
		for _, e := range doc.Entries {
			re, err := routeRegexp(e.Route)
			if err != nil {
				return nil, fmt.Errorf("apischema: %s %s: %w", svc, e.Route, err)
			}
			scopes := e.Scopes
			if string(scopes) == "null" {
				scopes = nil
			}
			api.Entries = append(api.Entries, Entry{
				Service: svc, Name: e.Name, Method: strings.ToUpper(e.Method), Route: e.Route,
				Input: schemaRef(svc, e.Input), Output: schemaRef(svc, e.Output),
				Scopes: scopes, Query: e.Query, re: re,
			})
		}
	}
	return api, nil
}

// schemaRef turns api.json's `v1/task.json#` into `queue/v1/task.json`.
func schemaRef(svc, ref string) string {
	if ref == "" {
		return ""
	}
	return svc + "/" + strings.TrimSuffix(ref, "#")
}

// routeRegexp matches a route's path: a `<param>` is one path segment,
// except a last `<name>` or `<taskQueueId>`, which may span several
// (artifact and object names and task queue ids contain slashes unless the
// client escapes them).
func routeRegexp(route string) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString("^")
	parts := strings.Split(route, "/")
	for i, p := range parts {
		if i > 0 {
			b.WriteString("/")
		}
		if strings.HasPrefix(p, "<") && strings.HasSuffix(p, ">") {
			if i == len(parts)-1 && (p == "<name>" || p == "<taskQueueId>") {
				b.WriteString("(.+)")
			} else {
				b.WriteString("([^/]+)")
			}
			continue
		}
		b.WriteString(regexp.QuoteMeta(p))
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}

// Match returns the entry for a request of service to method and path
// (relative to the service's base, escaped as sent), or nil.
func (a *API) Match(service, method, path string) *Entry {
	for i := range a.Entries {
		e := &a.Entries[i]
		if e.Service == service && e.Method == method && e.re.MatchString(path) {
			return e
		}
	}
	return nil
}

// Lookup returns the entry of service named name, or nil.
func (a *API) Lookup(service, name string) *Entry {
	for i := range a.Entries {
		if e := &a.Entries[i]; e.Service == service && e.Name == name {
			return e
		}
	}
	return nil
}
