package image

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"

	"github.com/distribution/reference"

	"go.dockerworker.dev/docker-worker/schemas"
	wa "go.dockerworker.dev/docker-worker/worker/artifacts"
)

// taskIDPattern is the form of a Taskcluster task ID (a v4 slug id), as the
// queue's schemas give it.
var taskIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{8}[Q-T][A-Za-z0-9_-][CGKOSWaeimquy26-][A-Za-z0-9_-]{10}[AQgw]$`)

// CheckPayload implements features.PayloadChecker: a registry image must be
// a valid Docker reference (the grammar the daemon pulls by), a task image
// must name a task ID and an artifact name, and an indexed image an index
// namespace and an artifact name.
func (f *Feature) CheckPayload(p *schemas.Payload) []schemas.Problem {
	img := p.Image
	at := func(member string) string { return schemas.MemberPath("payload.image", member) }
	var out []schemas.Problem
	add := func(path, msg string) { out = append(out, schemas.Problem{Path: path, Message: msg}) }
	switch img.Type {
	case schemas.ImageTypeDockerImage:
		if _, err := reference.ParseNormalizedNamed(img.Name); err != nil {
			path := at("name")
			if img.Shorthand {
				path = "payload.image"
			}
			add(path, fmt.Sprintf("invalid image reference %q: %v", img.Name, err))
		}
	case schemas.ImageTypeTaskImage:
		if !taskIDPattern.MatchString(img.TaskID) {
			add(at("taskId"), fmt.Sprintf("%q is not a task ID (a 22-character slug id)", img.TaskID))
		}
	case schemas.ImageTypeIndexedImage:
		if img.Namespace == "" || strings.ContainsFunc(img.Namespace, unicode.IsControl) {
			add(at("namespace"), fmt.Sprintf("%q is not an index namespace: it must not be empty or hold control characters", img.Namespace))
		}
	}
	if img.Type == schemas.ImageTypeTaskImage || img.Type == schemas.ImageTypeIndexedImage {
		if err := wa.CheckArtifactName(img.Path); err != nil {
			add(at("path"), err.Error())
		}
	}
	return out
}
