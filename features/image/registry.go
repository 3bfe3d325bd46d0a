package image

import (
	"cmp"
	"slices"
	"strings"

	"go.dockerworker.dev/docker-worker/worker/docker"
)

// repository splits an image name into its repository and tag (or
// digest, with its '@'); tag is "" when the name has neither.
func repository(name string) (repo, tag string) {
	if i := strings.Index(name, "@"); i >= 0 {
		return name[:i], name[i:]
	}
	if i := strings.LastIndex(name, ":"); i >= 0 && !strings.Contains(name[i:], "/") {
		return name[:i], name[i+1:]
	}
	return name, ""
}

// hasHost reports whether the first component of a repository names a
// registry host, by Docker's rule: it holds a '.' or a ':' or is
// "localhost".
func hasHost(repo string) bool {
	first, _, ok := strings.Cut(repo, "/")
	return ok && (strings.ContainsAny(first, ".:") || first == "localhost")
}

// credentials returns the configured registry credentials that apply to
// the image name, as docker-worker chose them: only names with a user or a
// host part (official images such as "ubuntu" never authenticate), looked
// up with the default registry in front when they name no host; the
// longest registries key that is the repository or a '/'-bounded prefix of
// it wins.
func (f *Feature) credentials(name string) (docker.RegistryAuth, bool) {
	repo, _ := repository(name)
	if !strings.Contains(repo, "/") || len(f.cfg.Registries) == 0 {
		return docker.RegistryAuth{}, false
	}
	lookup := repo
	if !hasHost(repo) {
		lookup = strings.TrimSuffix(f.cfg.DefaultRegistry, "/") + "/" + repo
	}
	keys := make([]string, 0, len(f.cfg.Registries))
	for k := range f.cfg.Registries {
		keys = append(keys, k)
	}
	// Longest first; equal lengths in a fixed order.
	slices.SortFunc(keys, func(a, b string) int {
		return cmp.Or(cmp.Compare(len(b), len(a)), strings.Compare(a, b))
	})
	for _, k := range keys {
		prefix := strings.TrimSuffix(k, "/")
		if prefix == "" || (lookup != prefix && !strings.HasPrefix(lookup, prefix+"/")) {
			continue
		}
		c := f.cfg.Registries[k]
		host, _, _ := strings.Cut(prefix, "/")
		return docker.RegistryAuth{Username: c.Username, Password: c.Password, ServerAddress: host}, true
	}
	return docker.RegistryAuth{}, false
}

// imageScopes are the scopes that allow a task to use a registry image
// pulled with credentials: docker-worker:image:<name> for the name as the
// payload gives it and for its repository with the tag it defaults to.
func imageScopes(name string) []string {
	out := []string{"docker-worker:image:" + name}
	repo, tag := repository(name)
	full := repo + ":latest"
	switch {
	case strings.HasPrefix(tag, "@"):
		full = repo + tag
	case tag != "":
		full = repo + ":" + tag
	}
	if full != name {
		out = append(out, "docker-worker:image:"+full)
	}
	return out
}
