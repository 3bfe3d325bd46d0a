// Package scopecheck is the scope check the cache and device features
// share, as docker-worker made it: every named resource needs the plain
// scope <prefix><name> or the per-pool one <prefix><name>:<pool>, found in
// the task's scopes or, when those do not suffice, in their expansion
// through roles (auth.expandScopes). For the features under features/
// only.
package scopecheck

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"go.dockerworker.dev/docker-worker/worker/scopes"
	"go.dockerworker.dev/docker-worker/worker/taskerr"
)

// Expander expands scopes through roles (auth.expandScopes).
type Expander interface {
	ExpandScopes(ctx context.Context, scopes []string) ([]string, error)
}

// Requirement is what a task asks for.
type Requirement struct {
	// Prefix is the scope prefix ("docker-worker:cache:"); Pool the
	// worker pool for the per-pool form.
	Prefix, Pool string
	// Names are the resources asked for.
	Names []string
	// Insufficient is the message's first sentence (docker-worker's);
	// What and Field name the resources in the rest ("cache",
	// "payload.cache").
	Insufficient, What, Field string
}

func (r Requirement) anyOf(name string) []string {
	return []string{r.Prefix + name, r.Prefix + name + ":" + r.Pool}
}

func (r Requirement) missing(have []string) []string {
	var out []string
	for _, name := range r.Names {
		if !slices.ContainsFunc(r.anyOf(name), func(s string) bool { return scopes.Satisfied(have, s) }) {
			out = append(out, name)
		}
	}
	return out
}

// Check returns nil when the task's scopes have meets r, an error with
// the missing and required scopes as docker-worker printed them when they
// do not, and an internal error when the expansion itself fails.
func Check(ctx context.Context, exp Expander, have []string, r Requirement) error {
	if len(r.Names) == 0 {
		return nil
	}
	miss := r.missing(have)
	if len(miss) > 0 && exp != nil {
		expanded, err := exp.ExpandScopes(ctx, have)
		if err != nil {
			return taskerr.InternalError(fmt.Errorf("expand the task's scopes to check its %ss: %w", r.What, err))
		}
		miss = r.missing(expanded)
	}
	if len(miss) == 0 {
		return nil
	}
	expr := func(names []string) string {
		all := make([]any, len(names))
		for i, n := range names {
			all[i] = map[string][]string{"AnyOf": r.anyOf(n)}
		}
		b, _ := json.Marshal(map[string]any{"AllOf": all})
		return string(b)
	}
	return fmt.Errorf("%s  The task needs scope %s<name> (or %s<name>:%s) for each %s in %s, after expanding its roles.\nMissing scopes: %s\nRequired scopes: %s",
		r.Insufficient, r.Prefix, r.Prefix, r.Pool, r.What, r.Field, expr(miss), expr(r.Names))
}
