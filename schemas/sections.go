package schemas

import (
	"slices"
	"sort"
)

// Sections lists the parts of the payload that ask a worker for something
// beyond running a command in a container, as paths a feature can own:
// "image.<type>", "cache" (any volume cache), "capabilities.privileged",
// "capabilities.disableSeccomp", "capabilities.devices.<name>" (every key
// given, as docker-worker allocated a device for each) and
// "features.<name>" (every feature the payload itself sets to true; a
// defaulted flag is not a request). Sorted.
func (p *Payload) Sections() []string {
	out := []string{"image." + p.Image.Type}
	if len(p.Cache) > 0 {
		out = append(out, "cache")
	}
	if c := p.Capabilities; c != nil {
		if c.Privileged {
			out = append(out, "capabilities.privileged")
		}
		if c.DisableSeccomp {
			out = append(out, "capabilities.disableSeccomp")
		}
		for name := range c.Devices {
			out = append(out, "capabilities.devices."+name)
		}
	}
	for name, on := range p.Features {
		if on && p.Explicit("features."+name) {
			out = append(out, "features."+name)
		}
	}
	sort.Strings(out)
	return out
}

// Explicit reports whether the payload itself gave the field at path (in
// the notation of Sections, without the "payload." prefix) rather than
// a schema default filling it in.
func (p *Payload) Explicit(path string) bool {
	return !slices.Contains(p.Defaulted, "payload."+path)
}
