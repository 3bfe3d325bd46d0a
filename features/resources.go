package features

import (
	"maps"
	"sync"
)

// Resources are facts about one run that features share: the task image
// (set by the runner once an [ImageProvider] resolved it) and the sha256 of
// every artifact uploaded with one (set by the [Publisher]). Chain of trust
// reads them. Safe for concurrent use; the zero value is ready.
type Resources struct {
	mu        sync.Mutex
	image     Image
	artifacts map[string]string
}

// SetImage records the task image.
func (r *Resources) SetImage(img Image) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.image = img
}

// Image is the task image; its ID is "" until it is resolved.
func (r *Resources) Image() Image {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.image
}

// RecordArtifact records the hex sha256 of an uploaded artifact.
func (r *Resources) RecordArtifact(name, sha256 string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.artifacts == nil {
		r.artifacts = map[string]string{}
	}
	r.artifacts[name] = sha256
}

// ArtifactHashes returns the recorded artifact hashes by name (a copy).
func (r *Resources) ArtifactHashes() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.artifacts)
}
