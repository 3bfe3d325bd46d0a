package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// DockerSaveConfig controls the dockerSave feature.
type DockerSaveConfig struct {
	// Expiration is how long the saved image and caches are kept, as
	// docker-worker wrote it ("7 days", "12 hours", "1 day 6 hours"); the
	// task's expiry caps it.
	Expiration string `yaml:"expiration"`
}

// Defaults of the dockerSave and dind keys (docker-worker's).
const (
	DefaultDockerSaveExpiration = "7 days"
	DefaultDindImage            = "taskcluster/dind-service:v4.0"
)

func (c *Config) defaultDockerSave() {
	c.DockerSave = DockerSaveConfig{Expiration: DefaultDockerSaveExpiration}
	c.DindImage = DefaultDindImage
}

// validateDockerSave checks the dockerSave and dind keys.
func (c *Config) validateDockerSave(bad func(key, format string, args ...any)) {
	if _, err := ParseRelativeTime(c.DockerSave.Expiration); err != nil {
		bad("dockerSave.expiration", "%v", err)
	}
	if strings.TrimSpace(c.DindImage) == "" {
		bad("dindImage", "must name an image")
	}
}

// DockerSaveExpiration is DockerSave.Expiration as a duration (the
// default's when it does not parse; Validate reports that).
func (c *Config) DockerSaveExpiration() time.Duration {
	d, err := ParseRelativeTime(c.DockerSave.Expiration)
	if err != nil {
		d, _ = ParseRelativeTime(DefaultDockerSaveExpiration)
	}
	return d
}

var relativePart = regexp.MustCompile(`^(\d+)\s*([a-z]+)`)

// relativeUnits are the units of Taskcluster's relative times ("fromNow"),
// months and years left out (their length varies).
var relativeUnits = map[string]time.Duration{
	"w": 7 * 24 * time.Hour, "week": 7 * 24 * time.Hour, "weeks": 7 * 24 * time.Hour,
	"d": 24 * time.Hour, "day": 24 * time.Hour, "days": 24 * time.Hour,
	"h": time.Hour, "hour": time.Hour, "hours": time.Hour,
	"m": time.Minute, "min": time.Minute, "mins": time.Minute, "minute": time.Minute, "minutes": time.Minute,
	"s": time.Second, "sec": time.Second, "secs": time.Second, "second": time.Second, "seconds": time.Second,
}

// ParseRelativeTime parses a positive relative time in Taskcluster's
// words: one or more "<n> <unit>" parts with units weeks, days, hours,
// minutes or seconds (singular, plural or abbreviated).
func ParseRelativeTime(s string) (time.Duration, error) {
	rest := strings.ToLower(strings.TrimSpace(s))
	if rest == "" {
		return 0, fmt.Errorf("%q is not a relative time such as \"7 days\"", s)
	}
	var total time.Duration
	for rest != "" {
		m := relativePart.FindStringSubmatch(rest)
		if m == nil {
			return 0, fmt.Errorf("%q is not a relative time such as \"7 days\"", s)
		}
		unit, ok := relativeUnits[m[2]]
		if !ok {
			return 0, fmt.Errorf("%q: unknown unit %q (weeks, days, hours, minutes, seconds)", s, m[2])
		}
		n, err := strconv.Atoi(m[1])
		if err != nil || n > 100_000 {
			return 0, fmt.Errorf("%q: %s is too large", s, m[1])
		}
		total += time.Duration(n) * unit
		rest = strings.TrimSpace(rest[len(m[0]):])
	}
	if total <= 0 {
		return 0, fmt.Errorf("%q must be longer than zero", s)
	}
	return total, nil
}
