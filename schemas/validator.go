// Package schemas embeds the docker-worker task payload schema and validates
// payloads against it, decoding valid ones into a typed Payload.
package schemas

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// payloadSchema is embedded as a string so that it cannot be modified.
//
//go:embed payload.json
var payloadSchema string

// schemaURL is the location the embedded schema is registered under in the
// compiler; its relative $id is resolved against it.
const schemaURL = "https://docker-worker.invalid/schemas/payload.json"

// rootPath names the payload itself in Problem paths.
const rootPath = "payload"

// Problem is one reason a payload is invalid.
type Problem struct {
	// Path names the offending value: "payload" for the payload itself,
	// then ".name" for object members whose name is an identifier,
	// `["name"]` for other member names and "[i]" for array elements, e.g.
	// `payload.onExitStatus.retry[0]` or `payload.artifacts["public/x"].expires`.
	Path string
	// Message says what is wrong, e.g. "must be integer".
	Message string
}

// String returns "<path>: <message>".
func (p Problem) String() string {
	return p.Path + ": " + p.Message
}

// Validator validates docker-worker payloads. It is safe for concurrent use.
//
// It is built on github.com/santhosh-tekuri/jsonschema/v6 rather than
// gojsonschema: v6 is maintained, implements drafts 4 through 2020-12
// (so the draft-06 schema is validated with draft-06 semantics), validates
// this schema about twice as fast, and reports a typed error tree with
// instance locations as JSON pointers, which is what Problem paths are built
// from. Format assertion is switched on so "date-time" is enforced, as
// docker-worker's Ajv validator did.
type Validator struct {
	schema *jsonschema.Schema
	raw    string
}

// NewValidator compiles the embedded payload schema.
func NewValidator() (*Validator, error) {
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(payloadSchema))
	if err != nil {
		return nil, fmt.Errorf("schemas: parse embedded payload schema: %w", err)
	}
	v, err := newValidatorFromDoc(schemaURL, doc)
	if err != nil {
		return nil, err
	}
	v.raw = payloadSchema
	return v, nil
}

// newValidatorFromDoc compiles an already decoded schema document.
func newValidatorFromDoc(url string, doc any) (*Validator, error) {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("schemas: add schema resource: %w", err)
	}
	s, err := c.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("schemas: compile payload schema: %w", err)
	}
	return &Validator{schema: s}, nil
}

// SchemaJSON returns a copy of the embedded payload schema.
func (v *Validator) SchemaJSON() []byte {
	return []byte(v.raw)
}

// Validate checks raw against the payload schema. If it is valid, it returns
// the payload decoded after schema defaults have been applied and no
// problems. Otherwise it returns nil and every violation found, sorted by
// path. Input that is not JSON is reported as a problem at "payload".
func (v *Validator) Validate(raw []byte) (*Payload, []Problem) {
	inst, err := decodeJSON(raw)
	if err != nil {
		return nil, []Problem{{Path: rootPath, Message: "invalid JSON: " + err.Error()}}
	}
	if err := v.schema.Validate(inst); err != nil {
		return nil, schemaProblems(err, inst)
	}
	var defaulted []string
	applyDefaults(v.schema, inst, rootPath, &defaulted)
	normalizeNumbers(inst)
	b, err := json.Marshal(inst)
	if err != nil {
		return nil, []Problem{{Path: rootPath, Message: "cannot re-encode payload: " + err.Error()}}
	}
	var p Payload
	if err := json.Unmarshal(b, &p); err != nil {
		// The schema allows integers of any size; Go ints do not.
		path, msg := rootPath, "cannot decode: "+err.Error()
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			if te.Field != "" {
				path += "." + te.Field
			}
			if strings.HasPrefix(te.Value, "number") {
				msg = "number " + strings.TrimSpace(strings.TrimPrefix(te.Value, "number")) + " is out of range"
			}
		}
		return nil, []Problem{{Path: path, Message: msg}}
	}
	p.Defaulted = defaulted
	return &p, nil
}

// decodeJSON decodes exactly one JSON value, keeping numbers exact.
func decodeJSON(raw []byte) (any, error) {
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err == nil {
			return nil, errors.New("unexpected data after the top-level value")
		}
		return nil, err
	}
	return v, nil
}

// applyDefaults injects schema defaults the way Ajv's useDefaults did: a
// property default is added to every object the property's schema applies
// to when the property is missing. Subschemas of oneOf/anyOf are not
// visited (this schema has no defaults there). Paths of injected values are
// appended to out.
func applyDefaults(s *jsonschema.Schema, v any, path string, out *[]string) {
	if s == nil {
		return
	}
	applyDefaults(s.Ref, v, path, out)
	for _, sub := range s.AllOf {
		applyDefaults(sub, v, path, out)
	}
	switch v := v.(type) {
	case map[string]any:
		names := make([]string, 0, len(s.Properties))
		for name := range s.Properties {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			ps := s.Properties[name]
			if _, ok := v[name]; !ok && ps.Default != nil {
				v[name] = deepCopy(*ps.Default)
				*out = append(*out, memberPath(path, name))
			}
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if ps, ok := s.Properties[k]; ok {
				applyDefaults(ps, v[k], memberPath(path, k), out)
			} else if ap, ok := s.AdditionalProperties.(*jsonschema.Schema); ok {
				applyDefaults(ap, v[k], memberPath(path, k), out)
			}
		}
	case []any:
		for i, item := range v {
			var is *jsonschema.Schema
			switch items := s.Items.(type) {
			case *jsonschema.Schema:
				is = items
			case []*jsonschema.Schema:
				if i < len(items) {
					is = items[i]
				}
			}
			if is == nil {
				is = s.Items2020
			}
			applyDefaults(is, item, indexPath(path, i), out)
		}
	}
}

func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		a := make([]any, len(v))
		for i, e := range v {
			a[i] = deepCopy(e)
		}
		return a
	default:
		return v
	}
}

// normalizeNumbers rewrites integral numbers written with a fraction or an
// exponent (such as 1.0 or 3e2, which the schema accepts as integers) in
// plain integer notation so that they decode into Go ints.
func normalizeNumbers(v any) {
	fix := func(n json.Number) json.Number {
		s := string(n)
		if !strings.ContainsAny(s, ".eE") {
			return n
		}
		r, ok := new(big.Rat).SetString(s)
		if !ok || !r.IsInt() {
			return n
		}
		return json.Number(r.Num().String())
	}
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if n, ok := e.(json.Number); ok {
				v[k] = fix(n)
			} else {
				normalizeNumbers(e)
			}
		}
	case []any:
		for i, e := range v {
			if n, ok := e.(json.Number); ok {
				v[i] = fix(n)
			} else {
				normalizeNumbers(e)
			}
		}
	}
}

// memberPath appends an object member to a Problem path.
func memberPath(base, name string) string {
	if isIdentifier(name) {
		return base + "." + name
	}
	return base + "[" + strconv.Quote(name) + "]"
}

// indexPath appends an array index to a Problem path.
func indexPath(base string, i int) string {
	return base + "[" + strconv.Itoa(i) + "]"
}

func isIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_' || r == '$' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z'):
		case i > 0 && r >= '0' && r <= '9':
		default:
			return false
		}
	}
	return true
}

// instancePath converts a JSON-pointer style instance location into a
// Problem path, consulting the instance to tell array indexes from member
// names.
func instancePath(inst any, loc []string) string {
	path := rootPath
	cur := inst
	for _, tok := range loc {
		if arr, ok := cur.([]any); ok {
			if i, err := strconv.Atoi(tok); err == nil && i >= 0 && i < len(arr) {
				path = indexPath(path, i)
				cur = arr[i]
				continue
			}
		}
		path = memberPath(path, tok)
		if obj, ok := cur.(map[string]any); ok {
			cur = obj[tok]
		} else {
			cur = nil
		}
	}
	return path
}

// schemaProblems flattens a validation error into sorted, de-duplicated leaf
// problems. It always returns at least one problem.
func schemaProblems(err error, inst any) []Problem {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return []Problem{{Path: rootPath, Message: err.Error()}}
	}
	var probs []Problem
	for _, l := range collectLeaves(ve) {
		probs = append(probs, l.problems(inst)...)
	}
	if len(probs) == 0 {
		probs = []Problem{{Path: instancePath(inst, ve.InstanceLocation), Message: "does not match the schema"}}
	}
	sort.Slice(probs, func(i, j int) bool {
		if probs[i].Path != probs[j].Path {
			return probs[i].Path < probs[j].Path
		}
		return probs[i].Message < probs[j].Message
	})
	return slices.Compact(probs)
}
