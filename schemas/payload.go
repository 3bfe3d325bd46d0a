package schemas

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// DefaultLog is the live log artifact name when payload.log is not given
// (the schema's default).
const DefaultLog = "public/logs/live.log"

// Image type discriminators used by the object forms of Payload.Image.
const (
	ImageTypeDockerImage  = "docker-image"
	ImageTypeIndexedImage = "indexed-image"
	ImageTypeTaskImage    = "task-image"
)

// Payload is the decoded docker-worker task payload.
//
// Validate fills in schema defaults before decoding, exactly where
// docker-worker's validator would have: Log and Command always, the
// Capabilities booleans only when a capabilities object is present, and the
// feature flags only when a features object is present.
type Payload struct {
	Image         Image               `json:"image"`
	Command       []string            `json:"command,omitempty"`
	Env           map[string]string   `json:"env,omitempty"`
	MaxRunTime    int                 `json:"maxRunTime"`
	Cache         map[string]string   `json:"cache,omitempty"`
	Artifacts     map[string]Artifact `json:"artifacts,omitempty"`
	Log           string              `json:"log,omitempty"`
	OnExitStatus  *OnExitStatus       `json:"onExitStatus,omitempty"`
	Capabilities  *Capabilities       `json:"capabilities,omitempty"`
	Features      map[string]bool     `json:"features,omitempty"`
	SupersederUrl string              `json:"supersederUrl,omitempty"`

	// Defaulted lists the fields (in Problem path notation, e.g.
	// "payload.features.bulkLog") whose values were injected from schema
	// defaults rather than given in the payload. Use it to tell an explicit
	// feature flag from a defaulted one.
	Defaulted []string `json:"-"`
}

// Image is the image a task runs. It is given either as a plain registry
// reference string (decoded as Type ImageTypeDockerImage with Shorthand set)
// or as an object of one of the three image types.
type Image struct {
	// Type is ImageTypeDockerImage, ImageTypeIndexedImage or ImageTypeTaskImage.
	Type string
	// Name is the registry image reference (docker-image).
	Name string
	// Namespace is the index namespace of the task holding the image (indexed-image).
	Namespace string
	// TaskID is the task holding the image artifact (task-image).
	TaskID string
	// Path is the artifact name of the image tarball (indexed-image, task-image).
	Path string
	// Shorthand records that the image was given as a bare string; it is
	// marshalled back as a string.
	Shorthand bool
}

type imageObject struct {
	Type      string `json:"type"`
	Name      string `json:"name,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	TaskID    string `json:"taskId,omitempty"`
	Path      string `json:"path,omitempty"`
}

// UnmarshalJSON accepts both the string and the object forms.
func (i *Image) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*i = Image{Type: ImageTypeDockerImage, Name: s, Shorthand: true}
		return nil
	}
	var o imageObject
	if err := json.Unmarshal(b, &o); err != nil {
		return fmt.Errorf("image must be a string or an object: %w", err)
	}
	*i = Image{Type: o.Type, Name: o.Name, Namespace: o.Namespace, TaskID: o.TaskID, Path: o.Path}
	return nil
}

// MarshalJSON writes the string form for shorthand images and the object form
// otherwise.
func (i Image) MarshalJSON() ([]byte, error) {
	if i.Shorthand && i.Type == ImageTypeDockerImage {
		return json.Marshal(i.Name)
	}
	return json.Marshal(imageObject{Type: i.Type, Name: i.Name, Namespace: i.Namespace, TaskID: i.TaskID, Path: i.Path})
}

// Artifact is one entry of Payload.Artifacts.
type Artifact struct {
	// Type is "file", "directory" or "volume".
	Type string `json:"type"`
	// Path is the absolute path inside the container.
	Path string `json:"path"`
	// Expires is nil when the payload gives no expiry (the task's expiry applies).
	Expires *time.Time `json:"expires,omitempty"`
}

// OnExitStatus lists exit codes that get special treatment.
type OnExitStatus struct {
	Retry       []int `json:"retry,omitempty"`
	PurgeCaches []int `json:"purgeCaches,omitempty"`
}

// Capabilities are the extra privileges requested for the task container.
type Capabilities struct {
	Privileged     bool `json:"privileged"`
	DisableSeccomp bool `json:"disableSeccomp"`
	// Devices keeps every key given in the payload, including those set to
	// false: docker-worker allocated a device for each key present.
	Devices map[string]bool `json:"devices,omitempty"`
}

// UnmarshalJSON decodes an artifact, accepting every date-time form the
// schema accepts (lower-case "t"/"z" and leap seconds included).
func (a *Artifact) UnmarshalJSON(b []byte) error {
	var raw struct {
		Type    string  `json:"type"`
		Path    string  `json:"path"`
		Expires *string `json:"expires"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*a = Artifact{Type: raw.Type, Path: raw.Path}
	if raw.Expires != nil {
		t, err := parseDateTime(*raw.Expires)
		if err != nil {
			return err
		}
		a.Expires = &t
	}
	return nil
}

// parseDateTime parses an RFC 3339 date-time. Unlike time.Parse it accepts
// lower-case separators and a leap second (":60"), which is folded into the
// following second.
func parseDateTime(s string) (time.Time, error) {
	u := strings.ToUpper(s)
	t, err := time.Parse(time.RFC3339Nano, u)
	if err == nil {
		return t, nil
	}
	if len(u) >= 19 && u[16:19] == ":60" {
		if t2, err2 := time.Parse(time.RFC3339Nano, u[:17]+"59"+u[19:]); err2 == nil {
			return t2.Add(time.Second), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a valid date-time: %w", s, err)
}
