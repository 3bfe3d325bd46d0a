package localqueue

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.dockerworker.dev/docker-worker/worker/scopes"
)

// scopeExpr is a scope expression of api.json: a scope template (with
// `<param>` placeholders), {"AllOf": [...]}, {"AnyOf": [...]},
// {"for": var, "in": param, "each": template} (one scope per element of the
// list parameter, valid only inside AllOf/AnyOf, which it is expanded into)
// or {"if": param, "then": expr} (satisfied outright when the boolean
// parameter is false). A nil *scopeExpr requires nothing.
type scopeExpr struct {
	scope        string
	allOf, anyOf []*scopeExpr
	forVar, in   string // for-each: variable and list parameter
	each         string // for-each: template
	ifParam      string
	then         *scopeExpr
}

// parseScopeExpr reads a scope expression in its api.json form.
func parseScopeExpr(raw json.RawMessage) (*scopeExpr, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return &scopeExpr{scope: s}, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("scope expression %s: %w", raw, err)
	}
	list := func(key string) ([]*scopeExpr, error) {
		var items []json.RawMessage
		if err := json.Unmarshal(m[key], &items); err != nil {
			return nil, fmt.Errorf("scope expression %s: %s: %w", raw, key, err)
		}
		out := make([]*scopeExpr, 0, len(items))
		for _, it := range items {
			e, err := parseScopeExpr(it)
			if err != nil {
				return nil, err
			}
			out = append(out, e)
		}
		return out, nil
	}
	str := func(key string) (string, error) {
		var v string
		if err := json.Unmarshal(m[key], &v); err != nil {
			return "", fmt.Errorf("scope expression %s: %s: %w", raw, key, err)
		}
		return v, nil
	}
	var e scopeExpr
	var err error
	switch {
	case len(m) == 1 && m["AllOf"] != nil:
		e.allOf, err = list("AllOf")
	case len(m) == 1 && m["AnyOf"] != nil:
		e.anyOf, err = list("AnyOf")
	case len(m) == 3 && m["for"] != nil && m["in"] != nil && m["each"] != nil:
		if e.forVar, err = str("for"); err == nil {
			if e.in, err = str("in"); err == nil {
				e.each, err = str("each")
			}
		}
	case len(m) == 2 && m["if"] != nil && m["then"] != nil:
		if e.ifParam, err = str("if"); err == nil {
			e.then, err = parseScopeExpr(m["then"])
		}
	default:
		err = fmt.Errorf("scope expression %s: unknown form", raw)
	}
	if err != nil {
		return nil, err
	}
	return &e, nil
}

// mustScopes parses a scope expression literal of the route table.
func mustScopes(s string) *scopeExpr {
	if s == "" {
		return nil
	}
	raw := json.RawMessage(s)
	if !json.Valid(raw) {
		raw, _ = json.Marshal(s)
	}
	e, err := parseScopeExpr(raw)
	if err != nil {
		panic("localqueue: route table: " + err.Error())
	}
	return e
}

// MarshalJSON writes the expression in its api.json form.
func (e *scopeExpr) MarshalJSON() ([]byte, error) {
	switch {
	case e.allOf != nil:
		return json.Marshal(map[string]any{"AllOf": e.allOf})
	case e.anyOf != nil:
		return json.Marshal(map[string]any{"AnyOf": e.anyOf})
	case e.forVar != "":
		return json.Marshal(map[string]string{"for": e.forVar, "in": e.in, "each": e.each})
	case e.ifParam != "":
		return json.Marshal(map[string]any{"if": e.ifParam, "then": e.then})
	}
	return json.Marshal(e.scope)
}

// errScopeParams is wrapped by evaluation errors caused by a parameter the
// handler did not provide: a bug, not the caller's fault.
var errScopeParams = errors.New("scope expression parameter")

// expand substitutes the parameters into the expression: scope templates
// become scopes and for-each entries become the scopes they stand for. An
// if/then whose parameter is false expands to an empty AllOf.
func (e *scopeExpr) expand(params map[string]any) (*scopeExpr, error) {
	switch {
	case e.allOf != nil || e.anyOf != nil:
		var items []*scopeExpr
		for _, it := range append(slices.Clone(e.allOf), e.anyOf...) {
			if it.forVar != "" {
				list, ok := params[it.in].([]string)
				if !ok {
					return nil, fmt.Errorf("%w %q: want a list of strings, got %T", errScopeParams, it.in, params[it.in])
				}
				for _, v := range list {
					s, err := substitute(it.each, params, it.forVar, v)
					if err != nil {
						return nil, err
					}
					items = append(items, &scopeExpr{scope: s})
				}
				continue
			}
			x, err := it.expand(params)
			if err != nil {
				return nil, err
			}
			items = append(items, x)
		}
		if items == nil {
			items = []*scopeExpr{}
		}
		if e.allOf != nil {
			return &scopeExpr{allOf: items}, nil
		}
		return &scopeExpr{anyOf: items}, nil
	case e.forVar != "":
		return nil, fmt.Errorf("%w: for/each outside AllOf or AnyOf", errScopeParams)
	case e.ifParam != "":
		cond, ok := params[e.ifParam].(bool)
		if !ok {
			return nil, fmt.Errorf("%w %q: want a boolean, got %T", errScopeParams, e.ifParam, params[e.ifParam])
		}
		if !cond {
			return &scopeExpr{allOf: []*scopeExpr{}}, nil
		}
		return e.then.expand(params)
	}
	s, err := substitute(e.scope, params, "", "")
	if err != nil {
		return nil, err
	}
	return &scopeExpr{scope: s}, nil
}

// substitute replaces each `<name>` in tmpl by the string parameter name,
// or by val when name is forVar (the loop variable of a for/each).
func substitute(tmpl string, params map[string]any, forVar, val string) (string, error) {
	var b strings.Builder
	rest := tmpl
	for {
		i := strings.IndexByte(rest, '<')
		j := strings.IndexByte(rest[max(i, 0):], '>')
		if i < 0 || j < 0 {
			b.WriteString(rest)
			return b.String(), nil
		}
		name := rest[i+1 : i+j]
		b.WriteString(rest[:i])
		if forVar != "" && name == forVar {
			b.WriteString(val)
		} else if v, ok := params[name].(string); ok {
			b.WriteString(v)
		} else {
			return "", fmt.Errorf("%w %q of %q: want a string, got %T", errScopeParams, name, tmpl, params[name])
		}
		rest = rest[i+j+1:]
	}
}

// satisfiedBy reports whether have satisfies the (expanded) expression.
func (e *scopeExpr) satisfiedBy(have []string) bool {
	switch {
	case e.allOf != nil:
		for _, it := range e.allOf {
			if !it.satisfiedBy(have) {
				return false
			}
		}
		return true
	case e.anyOf != nil:
		for _, it := range e.anyOf {
			if it.satisfiedBy(have) {
				return true
			}
		}
		return false
	}
	return scopes.Satisfied(have, e.scope)
}

// unsatisfied returns the part of the (expanded) expression have does not
// satisfy, or nil: the missing scopes of an AllOf, an AnyOf whole.
func (e *scopeExpr) unsatisfied(have []string) *scopeExpr {
	if e.satisfiedBy(have) {
		return nil
	}
	if e.allOf != nil {
		var missing []*scopeExpr
		for _, it := range e.allOf {
			if m := it.unsatisfied(have); m != nil {
				missing = append(missing, m)
			}
		}
		if len(missing) == 1 {
			return missing[0]
		}
		return &scopeExpr{allOf: missing}
	}
	return e
}
