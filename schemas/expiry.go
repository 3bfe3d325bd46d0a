package schemas

import (
	"fmt"
	"sort"
	"time"
)

// jsDateLayout matches JavaScript's Date.prototype.toJSON (always UTC).
const jsDateLayout = "2006-01-02T15:04:05.000Z07:00"

// CheckArtifactExpiry reports every artifact whose expiry is later than the
// task's, with docker-worker's message, sorted by artifact name. Artifacts
// without an expiry inherit the task's and are never reported.
func CheckArtifactExpiry(p *Payload, taskExpires time.Time) []Problem {
	if p == nil {
		return nil
	}
	names := make([]string, 0, len(p.Artifacts))
	for name := range p.Artifacts {
		names = append(names, name)
	}
	sort.Strings(names)
	var out []Problem
	for _, name := range names {
		exp := p.Artifacts[name].Expires
		// JavaScript dates have millisecond precision, so compare at that.
		if exp == nil || !exp.Truncate(time.Millisecond).After(taskExpires.Truncate(time.Millisecond)) {
			continue
		}
		out = append(out, Problem{
			Path: memberPath(memberPath(memberPath(rootPath, "artifacts"), name), "expires"),
			Message: fmt.Sprintf("Artifact expiration for '%s' must not be greater than task expiration. Artifact expiration is '%s' but task expiration is '%s'",
				name, jsDate(*exp), jsDate(taskExpires)),
		})
	}
	return out
}

// jsDate formats t like JavaScript's Date.prototype.toJSON: UTC with
// millisecond precision (truncated), e.g. 2026-11-22T05:00:00.000Z.
func jsDate(t time.Time) string {
	return t.UTC().Truncate(time.Millisecond).Format(jsDateLayout)
}
