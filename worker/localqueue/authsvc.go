package localqueue

import (
	"fmt"
	"net/http"
)

// The part of the auth service (`<rootUrl>/api/auth/v1`) that reads scopes:
// expandScopes and currentScopes, with the queue's roles (see [Role]).

const scopesetSchema = "/schemas/auth/v1/scopeset.json#"

type scopeset struct {
	Scopes []string `json:"scopes"`
}

// expandScopesRoute answers the given scopes expanded by the roles.
func (q *Queue) expandScopesRoute(w http.ResponseWriter, rq *apiRequest) error {
	var in struct {
		Scopes *[]string `json:"scopes"`
	}
	if err := decodeBody(rq, scopesetSchema, &in); err != nil {
		return err
	}
	if in.Scopes == nil {
		return invalidInput(scopesetSchema, "scopes is required")
	}
	var problems []string
	seen := map[string]bool{}
	for _, s := range *in.Scopes {
		if !printableASCII.MatchString(s) {
			problems = append(problems, fmt.Sprintf("scope %q must be printable ASCII", s))
		}
		if seen[s] {
			problems = append(problems, fmt.Sprintf("scope %q is given twice (scopes must be unique)", s))
		}
		seen[s] = true
	}
	if len(problems) > 0 {
		return invalidInput(scopesetSchema, problems...)
	}
	if err := rq.authorize(nil); err != nil {
		return err
	}
	q.reply(w, http.StatusOK, scopeset{Scopes: expandScopes(q.roles, *in.Scopes)})
	return nil
}

// currentScopes answers the scopes the request itself carries, expanded.
func (q *Queue) currentScopes(w http.ResponseWriter, rq *apiRequest) error {
	q.reply(w, http.StatusOK, scopeset{Scopes: expandScopes(q.roles, rq.auth.Scopes)})
	return nil
}
