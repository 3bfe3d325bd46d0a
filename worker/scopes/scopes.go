// Package scopes is Taskcluster scope satisfaction: a granted scope ending
// in `*` satisfies every scope with that prefix; any other satisfies only
// itself. The worker (capability checks) and the embedded queue (route
// scope expressions) both use it.
package scopes

import "strings"

// Satisfied reports whether any pattern in have grants scope.
func Satisfied(have []string, scope string) bool {
	for _, p := range have {
		if p == scope {
			return true
		}
		if prefix, ok := strings.CutSuffix(p, "*"); ok && strings.HasPrefix(scope, prefix) {
			return true
		}
	}
	return false
}

// AllSatisfied reports whether have grants every scope in want.
func AllSatisfied(have, want []string) bool {
	for _, s := range want {
		if !Satisfied(have, s) {
			return false
		}
	}
	return true
}
