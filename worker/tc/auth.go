package tc

import (
	"context"
	"fmt"
	"net/http"
)

// The auth service's scope calls: what a set of scopes amounts to once the
// deployment's roles are applied.

const authService = "auth"

type scopeset struct {
	Scopes []string `json:"scopes"`
}

// ExpandScopes returns scopes with every scope the deployment's roles grant
// them (`assume:<roleId>`, recursively), normalised: sorted, no duplicates,
// and no scope that another one (ending in `*`) already grants. Duplicates
// in scopes are sent once (the service refuses them).
func (c *Client) ExpandScopes(ctx context.Context, scopes []string) ([]string, error) {
	unique := []string{}
	seen := map[string]bool{}
	for _, s := range scopes {
		if !seen[s] {
			seen[s] = true
			unique = append(unique, s)
		}
	}
	var out scopeset
	if err := c.Request(ctx, authService, http.MethodPost, "/scopes/expand", nil, scopeset{Scopes: unique}, &out); err != nil {
		return nil, fmt.Errorf("expand scopes: %w", err)
	}
	return out.Scopes, nil
}

// CurrentScopes returns the scopes the client's own requests carry,
// expanded.
func (c *Client) CurrentScopes(ctx context.Context) ([]string, error) {
	var out scopeset
	if err := c.Request(ctx, authService, http.MethodGet, "/scopes/current", nil, nil, &out); err != nil {
		return nil, fmt.Errorf("current scopes: %w", err)
	}
	return out.Scopes, nil
}
