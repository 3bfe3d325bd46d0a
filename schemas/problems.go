package schemas

import (
	"encoding/json"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
)

// leaf is one elementary violation. If message is set it is used as is;
// otherwise the message is derived from kind.
type leaf struct {
	loc     []string
	kind    jsonschema.ErrorKind
	message string
}

// collectLeaves flattens the library's error tree. Failed oneOf/anyOf
// keywords are reduced to the alternative the value most plausibly meant.
func collectLeaves(e *jsonschema.ValidationError) []leaf {
	switch k := e.ErrorKind.(type) {
	case *kind.OneOf:
		if len(k.Subschemas) > 1 {
			return []leaf{{loc: e.InstanceLocation, message: "must match exactly one allowed form, but matches several"}}
		}
		if len(e.Causes) > 0 {
			return chooseAlternative(e)
		}
	case *kind.AnyOf:
		if len(e.Causes) > 0 {
			return chooseAlternative(e)
		}
	}
	if len(e.Causes) == 0 {
		return []leaf{{loc: e.InstanceLocation, kind: e.ErrorKind}}
	}
	var out []leaf
	for _, c := range e.Causes {
		out = append(out, collectLeaves(c)...)
	}
	return out
}

// chooseAlternative picks which failed alternatives of a oneOf/anyOf to
// report:
//   - alternatives rejecting the value's JSON type are dropped; if all do,
//     a single "must be <types>" problem is reported;
//   - alternatives whose discriminating member (an enum or const on a direct
//     member, such as image.type) does not match are dropped next, and the
//     one with the fewest violations among the rest is reported;
//   - if every remaining alternative disagrees on the same member, the
//     values allowed for that member by all of them are reported.
func chooseAlternative(e *jsonschema.ValidationError) []leaf {
	loc := e.InstanceLocation
	var candidates [][]leaf
	var types []string
	for _, c := range e.Causes {
		b := collectLeaves(c)
		typeMismatch := false
		for _, l := range b {
			if t, ok := l.kind.(*kind.Type); ok && slices.Equal(l.loc, loc) {
				typeMismatch = true
				for _, w := range t.Want {
					if !slices.Contains(types, w) {
						types = append(types, w)
					}
				}
			}
		}
		if !typeMismatch {
			candidates = append(candidates, b)
		}
	}
	if len(candidates) == 0 {
		return []leaf{{loc: loc, message: "must be " + strings.Join(types, " or ")}}
	}

	isDiscriminator := func(l leaf) bool {
		if len(l.loc) != len(loc)+1 || !slices.Equal(l.loc[:len(loc)], loc) {
			return false
		}
		switch l.kind.(type) {
		case *kind.Enum, *kind.Const:
			return true
		}
		return false
	}
	var matching [][]leaf
	for _, b := range candidates {
		if !slices.ContainsFunc(b, isDiscriminator) {
			matching = append(matching, b)
		}
	}
	if len(matching) > 0 {
		return fewest(matching)
	}

	// Every candidate rejects a discriminating member; look for one member
	// they all reject and report the union of its allowed values.
	for _, first := range candidates[0] {
		if !isDiscriminator(first) {
			continue
		}
		member := first.loc[len(first.loc)-1]
		var allowed []string
		common := true
		for _, b := range candidates {
			found := false
			for _, l := range b {
				if !isDiscriminator(l) || l.loc[len(l.loc)-1] != member {
					continue
				}
				found = true
				var vals []any
				switch k := l.kind.(type) {
				case *kind.Enum:
					vals = k.Want
				case *kind.Const:
					vals = []any{k.Want}
				}
				for _, v := range vals {
					if s := jsonText(v); !slices.Contains(allowed, s) {
						allowed = append(allowed, s)
					}
				}
			}
			if !found {
				common = false
				break
			}
		}
		if common {
			return []leaf{{loc: first.loc, message: "must be one of " + strings.Join(allowed, ", ")}}
		}
	}
	return fewest(candidates)
}

// fewest returns the alternative with the fewest violations (the first on a tie).
func fewest(alts [][]leaf) []leaf {
	best := alts[0]
	for _, b := range alts[1:] {
		if len(b) < len(best) {
			best = b
		}
	}
	return best
}

// problems turns a leaf into one or more Problems.
func (l leaf) problems(inst any) []Problem {
	path := instancePath(inst, l.loc)
	if l.message != "" {
		return []Problem{{Path: path, Message: l.message}}
	}
	one := func(format string, args ...any) []Problem {
		return []Problem{{Path: path, Message: fmt.Sprintf(format, args...)}}
	}
	switch k := l.kind.(type) {
	case *kind.Required:
		var out []Problem
		for _, m := range k.Missing {
			out = append(out, Problem{Path: path, Message: fmt.Sprintf("missing required property %q", m)})
		}
		return out
	case *kind.AdditionalProperties:
		var out []Problem
		for _, p := range k.Properties {
			out = append(out, Problem{Path: path, Message: fmt.Sprintf("additional property %q is not allowed", p)})
		}
		return out
	case *kind.Type:
		return one("must be %s", strings.Join(k.Want, " or "))
	case *kind.Enum:
		vals := make([]string, len(k.Want))
		for i, v := range k.Want {
			vals[i] = jsonText(v)
		}
		return one("must be one of %s", strings.Join(vals, ", "))
	case *kind.Const:
		return one("must be %s", jsonText(k.Want))
	case *kind.Format:
		return one("%s is not a valid %s", jsonText(k.Got), k.Want)
	case *kind.Minimum:
		return one("must be >= %s", ratText(k.Want))
	case *kind.Maximum:
		return one("must be <= %s", ratText(k.Want))
	case *kind.ExclusiveMinimum:
		return one("must be > %s", ratText(k.Want))
	case *kind.ExclusiveMaximum:
		return one("must be < %s", ratText(k.Want))
	case *kind.MultipleOf:
		return one("must be a multiple of %s", ratText(k.Want))
	case *kind.MinLength:
		return one("must be at least %d characters long", k.Want)
	case *kind.MaxLength:
		return one("must be at most %d characters long", k.Want)
	case *kind.Pattern:
		return one("must match pattern %q", k.Want)
	case *kind.MinItems:
		return one("must have at least %d items", k.Want)
	case *kind.MaxItems:
		return one("must have at most %d items", k.Want)
	case *kind.UniqueItems:
		return one("items at %d and %d must not be equal", k.Duplicates[0], k.Duplicates[1])
	case *kind.MinProperties:
		return one("must have at least %d properties", k.Want)
	case *kind.MaxProperties:
		return one("must have at most %d properties", k.Want)
	case *kind.FalseSchema:
		return one("is not allowed")
	case nil:
		return one("does not match the schema")
	default:
		return one("does not satisfy %q", strings.Join(k.KeywordPath(), "/"))
	}
}

// jsonText renders a value as JSON for messages.
func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func ratText(r *big.Rat) string {
	if r == nil {
		return "?"
	}
	if r.IsInt() {
		return r.Num().String()
	}
	f, _ := r.Float64()
	return strconv.FormatFloat(f, 'g', -1, 64)
}
