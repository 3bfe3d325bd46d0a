package localqueue

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Roles follow Taskcluster's auth service. A role is an expansion rule: a
// scope set holding `assume:<roleId>` also holds the role's scopes, and so
// on recursively. Stars work both ways:
//
//   - an `assume:` scope ending in `*` (or a shorter prefix of `assume:`
//     ending in `*`, such as `*`) holds the scopes of every role whose id it
//     matches as a prefix;
//   - a role whose id ends in `*` applies to every `assume:` scope that
//     starts with the id's prefix, and each `<..>` in its scopes is replaced
//     by the part of the scope the `*` matched (when that part ends in `*`,
//     so does the scope, cut right after it).
//
// Expanded scope sets are normalised: no scope another one satisfies,
// sorted with trailing stars first.

// Role is a role of the queue's auth service.
type Role struct {
	RoleID string   `json:"roleId"`
	Scopes []string `json:"scopes"`
}

const (
	assumePrefix = "assume:"
	roleParam    = "<..>"
)

// printableASCII is the form of scopes and role ids.
var printableASCII = regexp.MustCompile(`^[ -~]*$`)

// maxExpandedScopes bounds an expansion, as a safety net under the cycle
// check of [CheckRoles].
const maxExpandedScopes = 100000

// CheckRoles reports every problem of roles at once, as the auth service
// refuses them: empty, duplicate or non-ASCII role ids, non-ASCII scopes,
// more than one `<..>` in a scope of a `*` role or a `*<..>` ending (an
// ambiguous star), and roles that would expand without end (a role whose
// scopes, directly or through other roles, assume itself).
func CheckRoles(roles []Role) error {
	var problems []error
	seen := map[string]bool{}
	for i, r := range roles {
		switch {
		case r.RoleID == "":
			problems = append(problems, fmt.Errorf("roles[%d]: roleId is required", i))
		case !printableASCII.MatchString(r.RoleID):
			problems = append(problems, fmt.Errorf("roles[%d]: roleId %q must be printable ASCII", i, r.RoleID))
		case seen[r.RoleID]:
			problems = append(problems, fmt.Errorf("roles[%d]: roleId %q is configured twice", i, r.RoleID))
		}
		seen[r.RoleID] = true
		for _, s := range r.Scopes {
			switch {
			case !printableASCII.MatchString(s):
				problems = append(problems, fmt.Errorf("role %q: scope %q must be printable ASCII", r.RoleID, s))
			case !strings.HasSuffix(r.RoleID, "*"):
			case strings.Count(s, roleParam) > 1:
				problems = append(problems, fmt.Errorf("role %q: parameterized scope %q contains more than one %s", r.RoleID, s, roleParam))
			case strings.HasSuffix(s, "*"+roleParam):
				problems = append(problems, fmt.Errorf("role %q: parameterized scope %q ends with *%s, an ambiguous star", r.RoleID, s, roleParam))
			}
		}
	}
	if len(problems) > 0 {
		return errors.Join(problems...)
	}
	if cycle := roleCycle(roles); cycle != nil {
		return fmt.Errorf("roles may not contain dependency cycles, found: %s", strings.Join(cycle, " -> "))
	}
	return nil
}

// roleCycle returns a cycle of roles that depend on each other, or nil. A
// role depends on the roles its scopes match, its `<..>` taken as `*` (the
// widest parameter).
func roleCycle(roles []Role) []string {
	deps := make([][]int, len(roles))
	for i, r := range roles {
		for _, s := range r.Scopes {
			if strings.HasSuffix(r.RoleID, "*") {
				s = withParam(s, "*")
			}
			for j := range roles {
				if _, ok := roles[j].grants(s); ok && !slices.Contains(deps[i], j) {
					deps[i] = append(deps[i], j)
				}
			}
		}
	}
	const (
		unvisited = iota
		onStack
		done
	)
	state := make([]int, len(roles))
	var stack []int
	var visit func(i int) []string
	visit = func(i int) []string {
		switch state[i] {
		case done:
			return nil
		case onStack:
			var cycle []string
			for _, j := range stack[slices.Index(stack, i):] {
				cycle = append(cycle, "'"+roles[j].RoleID+"'")
			}
			return append(cycle, "'"+roles[i].RoleID+"'")
		}
		state[i] = onStack
		stack = append(stack, i)
		for _, j := range deps[i] {
			if c := visit(j); c != nil {
				return c
			}
		}
		stack = stack[:len(stack)-1]
		state[i] = done
		return nil
	}
	for i := range roles {
		if c := visit(i); c != nil {
			return c
		}
	}
	return nil
}

// grants returns the scopes role r grants to a set holding scope, and
// whether it applies at all.
func (r Role) grants(scope string) ([]string, bool) {
	pattern := assumePrefix + r.RoleID
	prefix, parameterized := strings.CutSuffix(pattern, "*")
	if !parameterized {
		if scope == pattern || (strings.HasSuffix(scope, "*") && strings.HasPrefix(pattern, scope[:len(scope)-1])) {
			return r.Scopes, true
		}
		return nil, false
	}
	var param string
	switch {
	case strings.HasSuffix(scope, "*") && strings.HasPrefix(prefix, scope[:len(scope)-1]):
		param = "*" // the scope covers every role id the pattern matches
	case strings.HasPrefix(scope, prefix):
		param = scope[len(prefix):]
	default:
		return nil, false
	}
	out := make([]string, len(r.Scopes))
	for i, s := range r.Scopes {
		out[i] = withParam(s, param)
	}
	return out, true
}

// withParam replaces the `<..>` of scope by param; a param ending in `*`
// also replaces everything after the `<..>`.
func withParam(scope, param string) string {
	i := strings.Index(scope, roleParam)
	if i < 0 {
		return scope
	}
	if strings.HasSuffix(param, "*") {
		return scope[:i] + param
	}
	return scope[:i] + param + scope[i+len(roleParam):]
}

// mayAssume reports whether scope can match any role: it starts with
// `assume:`, or is a prefix of `assume:` followed by `*`.
func mayAssume(scope string) bool {
	if strings.HasPrefix(scope, assumePrefix) {
		return true
	}
	p, ok := strings.CutSuffix(scope, "*")
	return ok && strings.HasPrefix(assumePrefix, p)
}

// expandScopes returns scopes together with every scope roles grant them,
// recursively, normalised (see [normalizeScopes]). It is the one expansion
// the queue uses: for expandScopes, for the scopes of clients, temporary
// credentials and anonymous requests, and for authorizedScopes checks.
// roles must have passed [CheckRoles].
func expandScopes(roles []Role, scopes []string) []string {
	have := normalizeScopes(scopes)
	queue := slices.Clone(have)
	for len(queue) > 0 && len(have) < maxExpandedScopes {
		s := queue[0]
		queue = queue[1:]
		if !mayAssume(s) {
			continue
		}
		for _, r := range roles {
			granted, ok := r.grants(s)
			if !ok {
				continue
			}
			for _, g := range granted {
				if !satisfiedBy(have, g) {
					have = append(have, g)
					queue = append(queue, g)
				}
			}
		}
	}
	return normalizeScopes(have)
}

// satisfiedBy reports whether a scope of have satisfies scope.
func satisfiedBy(have []string, scope string) bool {
	for _, h := range have {
		if h == scope {
			return true
		}
		if p, ok := strings.CutSuffix(h, "*"); ok && strings.HasPrefix(scope, p) {
			return true
		}
	}
	return false
}

// compareScopes orders scopes as Taskcluster does: by their text without a
// trailing `*`, a starred scope before the same scope without the star.
func compareScopes(a, b string) int {
	as, astar := strings.CutSuffix(a, "*")
	bs, bstar := strings.CutSuffix(b, "*")
	if as == bs && astar != bstar {
		if astar {
			return -1
		}
		return 1
	}
	return strings.Compare(as, bs)
}

// normalizeScopes returns the sorted set of scopes without duplicates and
// without any scope another one (ending in `*`) satisfies.
func normalizeScopes(scopes []string) []string {
	sorted := slices.Clone(scopes)
	slices.SortFunc(sorted, compareScopes)
	out := []string{}
	var star string // the last kept scope ending in `*`, without it
	haveStar := false
	for _, s := range sorted {
		if haveStar && strings.HasPrefix(s, star) {
			continue // covered (starred scopes sort before all they cover)
		}
		if len(out) > 0 && out[len(out)-1] == s {
			continue
		}
		out = append(out, s)
		if p, ok := strings.CutSuffix(s, "*"); ok {
			star, haveStar = p, true
		}
	}
	return out
}
