package config

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// decoder overlays a YAML node tree onto a Config by walking both, so
// that one bad key does not hide the others: every unknown key, wrong
// type and unusable !env tag becomes a Problem, and decoding goes on.
type decoder struct {
	getenv   func(string) string
	problems []*Problem
	// lines maps each key path the document gave to its line, so that
	// validation problems can point at it.
	lines map[string]int
	// profile and runnerKeys are LoadOptions.Profile and RunnerKeys.
	profile    string
	runnerKeys bool
	// ignored are the noEffect keys the document gave.
	ignored []string
	// runnerMeta are the runnerOnly values the document gave.
	runnerMeta map[string]any
}

// decode overlays the YAML (or JSON) document data onto c. It returns the
// decoder, whose lines hold the line of every key path it saw and whose
// problems are every problem it found; a document that is not YAML at
// all is one problem.
//
// A document in docker-worker's profile form (a top-level "defaults"
// mapping beside profiles such as "production" and "test") is read as
// its defaults overlaid with the profile o.Profile, if the file has it.
func decode(data []byte, c *Config, o LoadOptions) *decoder {
	d := &decoder{getenv: o.getenv(), lines: map[string]int{}, profile: o.Profile, runnerKeys: o.RunnerKeys, runnerMeta: map[string]any{}}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		d.problems = []*Problem{{Msg: fmt.Sprintf("not valid YAML: %v", err)}}
		return d
	}
	if len(doc.Content) == 0 {
		return d // empty file: defaults
	}
	root := doc.Content[0]
	v := reflect.ValueOf(c).Elem()
	if defaults := mappingValue(root, "defaults"); defaults != nil {
		d.value(defaults, v, "")
		if p := mappingValue(root, d.profile); d.profile != "" && p != nil {
			d.value(p, v, "")
		}
		return d
	}
	d.value(root, v, "")
	return d
}

// mappingValue is the value of key in the mapping node n (nil when n is
// not a mapping or has no such key).
func mappingValue(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func (d *decoder) bad(line int, key, format string, args ...any) {
	d.problems = append(d.problems, &Problem{Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// value decodes n into v, the value at key path key. It reports whether v
// was set; when it was not, the problem has been recorded (or n was null,
// which keeps the default).
func (d *decoder) value(n *yaml.Node, v reflect.Value, key string) bool {
	n, from, ok := d.resolve(n, key)
	if !ok {
		return false
	}
	if isNull(n) {
		return false // an empty value keeps the default
	}
	return d.into(n, v, key, from)
}

// into decodes the resolved node n into v; from is where n came from when
// an !env tag gave it.
func (d *decoder) into(n *yaml.Node, v reflect.Value, key, from string) bool {
	t := v.Type()
	switch t.Kind() {
	case reflect.Struct:
		if !d.expect(n, yaml.MappingNode, t, key, from) {
			return false
		}
		fields := yamlFields(t)
		var aliased []func()
		d.mapping(n, key, func(k, val *yaml.Node, path string) {
			i, ok := fields[k.Value]
			switch {
			case ok:
				d.value(val, v.Field(i), path)
			case ignoredKey(path):
				if !slices.Contains(d.ignored, path) { // a profile may repeat it
					d.ignored = append(d.ignored, path)
				}
			case key == "" && d.runnerKeys && runnerAliases[k.Value] != "":
				// The runner's values win over the pool's: applied last.
				target := runnerAliases[k.Value]
				aliased = append(aliased, func() {
					d.lines[target] = k.Line
					d.value(val, fieldAt(v, target), target)
				})
			case key == "" && d.runnerKeys && slices.Contains(runnerOnly, k.Value):
				var x any
				if r, ok := d.resolveTree(val, path); ok && r.Decode(&x) == nil {
					d.runnerMeta[k.Value] = x
				}
			default:
				d.bad(k.Line, path, "unknown key")
			}
		})
		for _, f := range aliased {
			f()
		}
		return true
	case reflect.Map:
		if !d.expect(n, yaml.MappingNode, t, key, from) {
			return false
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(t))
		}
		d.mapping(n, key, func(k, val *yaml.Node, path string) {
			mk := reflect.ValueOf(k.Value).Convert(t.Key())
			elem := reflect.New(t.Elem()).Elem()
			if old := v.MapIndex(mk); old.IsValid() {
				elem.Set(old)
			}
			if d.value(val, elem, path) {
				v.SetMapIndex(mk, elem)
			}
		})
		return true
	case reflect.Slice:
		if !d.expect(n, yaml.SequenceNode, t, key, from) {
			return false
		}
		s := reflect.MakeSlice(t, 0, len(n.Content))
		all := true
		for i, item := range n.Content {
			path := fmt.Sprintf("%s[%d]", key, i)
			d.lines[path] = item.Line
			elem := reflect.New(t.Elem()).Elem()
			if d.value(item, elem, path) {
				s = reflect.Append(s, elem)
			} else {
				all = all && isNull(item)
			}
		}
		if all {
			v.Set(s)
		}
		return all
	case reflect.Pointer:
		elem := reflect.New(t.Elem())
		if !d.into(n, elem.Elem(), key, from) {
			return false
		}
		v.Set(elem)
		return true
	case reflect.Interface:
		n, ok := d.resolveTree(n, key)
		if !ok {
			return false
		}
		var x any
		if err := n.Decode(&x); err != nil {
			d.bad(n.Line, key, "%v", err)
			return false
		}
		v.Set(reflect.ValueOf(&x).Elem())
		return true
	}
	return d.scalar(n, v, key, from)
}

// scalar decodes a scalar node into a string, integer, number or boolean.
func (d *decoder) scalar(n *yaml.Node, v reflect.Value, key, from string) bool {
	if !d.expect(n, yaml.ScalarNode, v.Type(), key, from) {
		return false
	}
	var x any
	if err := n.Decode(&x); err != nil {
		d.wrongType(n, v.Type(), key, from)
		return false
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(n.Value) // any scalar reads as its text, as YAML does
		return true
	case reflect.Int, reflect.Int64:
		if i, ok := asInt(x); ok && !v.OverflowInt(i) {
			v.SetInt(i)
			return true
		}
	case reflect.Float64:
		if f, ok := asFloat(x); ok {
			v.SetFloat(f)
			return true
		}
	case reflect.Bool:
		if b, ok := x.(bool); ok {
			v.SetBool(b)
			return true
		}
	default:
		panic(fmt.Sprintf("config: no decoding for %s (key %s)", v.Type(), key))
	}
	d.wrongType(n, v.Type(), key, from)
	return false
}

func asInt(x any) (int64, bool) {
	switch t := x.(type) {
	case int:
		return int64(t), true
	case int64:
		return t, true
	case float64: // 3.0, or an integer written as a JSON float
		if t == math.Trunc(t) && math.Abs(t) < 1<<63 {
			return int64(t), true
		}
	}
	return 0, false
}

func asFloat(x any) (float64, bool) {
	switch t := x.(type) {
	case int:
		return float64(t), true
	case int64:
		return float64(t), true
	case uint64:
		return float64(t), true
	case float64:
		return t, true
	}
	return 0, false
}

// expect records a wrong-type problem unless n is of kind k.
func (d *decoder) expect(n *yaml.Node, k yaml.Kind, t reflect.Type, key, from string) bool {
	if n.Kind == k {
		return true
	}
	d.wrongType(n, t, key, from)
	return false
}

func (d *decoder) wrongType(n *yaml.Node, t reflect.Type, key, from string) {
	got := "a mapping"
	switch n.Kind {
	case yaml.SequenceNode:
		got = "a list"
	case yaml.ScalarNode:
		got = strconv.Quote(n.Value)
	}
	if strings.HasPrefix(from, tagEnvSecret+" ") {
		got = "the value of " + from // not in logs
	} else if from != "" {
		got += " (from " + from + ")"
	}
	d.bad(n.Line, key, "must be %s, got %s", typeName(t), got)
}

// typeName says what a value of type t is written as.
func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Pointer:
		return typeName(t.Elem())
	case reflect.Struct, reflect.Map:
		return "a mapping"
	case reflect.Slice:
		return "a list of " + strings.TrimPrefix(strings.TrimPrefix(typeName(t.Elem()), "a "), "an ") + "s"
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int64:
		return "an integer"
	case reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	}
	return t.String()
}

// mapping calls each for every key of the mapping node n, with the key's
// path; a key given twice is a problem.
func (d *decoder) mapping(n *yaml.Node, key string, each func(k, v *yaml.Node, path string)) {
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name := k.Value
		if name == "" { // an empty (or not a scalar) key still shows in messages
			name = `""`
		}
		path := name
		if key != "" {
			path = key + "." + name
		}
		if first, dup := seen[k.Value]; dup {
			d.bad(k.Line, path, "is given twice (first on line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		d.lines[path] = k.Line
		each(k, v, path)
	}
}

// fieldAt is the field of the struct v at the dotted yaml key path (which
// must exist: the paths are the package's own).
func fieldAt(v reflect.Value, path string) reflect.Value {
	for _, name := range strings.Split(path, ".") {
		i, ok := yamlFields(v.Type())[name]
		if !ok {
			panic("config: no field " + path)
		}
		v = v.Field(i)
	}
	return v
}

// yamlFields maps the yaml names of t's fields to their indexes.
func yamlFields(t reflect.Type) map[string]int {
	fields := map[string]int{}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			fields[name] = i
		}
	}
	return fields
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// The !env tags of docker-worker's configuration loader (typed-env-config).
// Each names an environment variable whose value replaces the tagged node.
const (
	tagEnv       = "!env"        // the value, a string
	tagEnvString = "!env:string" // the same
	tagEnvSecret = "!env:secret" // the same (docker-worker marked secrets so)
	tagEnvNumber = "!env:number" // a number
	tagEnvBool   = "!env:bool"   // true or false, any case
	tagEnvFlag   = "!env:flag"   // true when the variable is set, else false
	tagEnvJSON   = "!env:json"   // any JSON value
	tagEnvList   = "!env:list"   // a list of strings separated by spaces; '…' or "…" may hold spaces
)

// EnvTags are the YAML tags that read a value from the environment.
var EnvTags = []string{tagEnv, tagEnvString, tagEnvSecret, tagEnvNumber, tagEnvBool, tagEnvFlag, tagEnvJSON, tagEnvList}

var envName = regexp.MustCompile(`^[A-Z0-9_]+$`)

// resolve returns n, or for an !env-tagged node the node its variable
// gives; from then describes the origin for messages ("!env:number CAP").
// It records a problem and returns false when the tag is not one of
// EnvTags or the variable is unset or unusable.
func (d *decoder) resolve(n *yaml.Node, key string) (_ *yaml.Node, from string, ok bool) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	tag := n.Tag
	if !strings.HasPrefix(tag, "!") || strings.HasPrefix(tag, "!!") {
		return n, "", true // untagged, or a standard YAML tag
	}
	known := false
	for _, t := range EnvTags {
		known = known || t == tag
	}
	if !known {
		d.bad(n.Line, key, "unknown tag %s (known: %s)", tag, strings.Join(EnvTags, ", "))
		return nil, "", false
	}
	if n.Kind != yaml.ScalarNode || !envName.MatchString(n.Value) {
		d.bad(n.Line, key, "%s must be followed by an environment variable name (A-Z, 0-9, _)", tag)
		return nil, "", false
	}
	name := n.Value
	from = tag + " " + name
	val := d.getenv(name)
	out := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: val, Line: n.Line, Column: n.Column}
	if tag == tagEnvFlag {
		out.Tag, out.Value = "!!bool", strconv.FormatBool(val != "")
		return out, from, true
	}
	if val == "" {
		d.bad(n.Line, key, "%s: the environment variable is not set", from)
		return nil, "", false
	}
	switch tag {
	case tagEnvNumber:
		f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			d.bad(n.Line, key, "%s: %q is not a number", from, val)
			return nil, "", false
		}
		if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			out.Tag, out.Value = "!!int", strconv.FormatInt(int64(f), 10)
		} else {
			out.Tag, out.Value = "!!float", strconv.FormatFloat(f, 'g', -1, 64)
		}
	case tagEnvBool:
		switch strings.ToLower(val) {
		case "true", "false":
			out.Tag, out.Value = "!!bool", strings.ToLower(val)
		default:
			d.bad(n.Line, key, "%s: %q is not true or false", from, val)
			return nil, "", false
		}
	case tagEnvJSON:
		var x any
		if err := json.Unmarshal([]byte(val), &x); err != nil {
			d.bad(n.Line, key, "%s: not valid JSON: %v", from, err)
			return nil, "", false
		}
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(val), &doc); err != nil || len(doc.Content) == 0 {
			d.bad(n.Line, key, "%s: cannot read this JSON: %v", from, err)
			return nil, "", false
		}
		out = doc.Content[0]
		setLine(out, n.Line, n.Column)
	case tagEnvList:
		out = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: n.Line, Column: n.Column}
		for _, s := range splitList(val) {
			out.Content = append(out.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s, Line: n.Line, Column: n.Column})
		}
	}
	return out, from, true
}

// resolveTree resolves every tagged node under n, for values decoded
// without a Go type to walk (workerLocation).
func (d *decoder) resolveTree(n *yaml.Node, key string) (*yaml.Node, bool) {
	n, _, ok := d.resolve(n, key)
	if !ok {
		return nil, false
	}
	if n.Kind != yaml.MappingNode && n.Kind != yaml.SequenceNode {
		return n, true
	}
	cp := *n
	cp.Content = make([]*yaml.Node, len(n.Content))
	all := true
	for i, c := range n.Content {
		path := fmt.Sprintf("%s[%d]", key, i)
		if n.Kind == yaml.MappingNode {
			if i%2 == 0 {
				cp.Content[i] = c // keys stay as written
				continue
			}
			path = key + "." + n.Content[i-1].Value
		}
		r, ok := d.resolveTree(c, path)
		cp.Content[i] = r
		all = all && ok
	}
	return &cp, all
}

// setLine gives every node under n the line and column of the tag whose
// variable held it, so problems inside point at that tag.
func setLine(n *yaml.Node, line, col int) {
	n.Line, n.Column = line, col
	for _, c := range n.Content {
		setLine(c, line, col)
	}
}

// splitList splits an !env:list value at spaces and tabs; a word in single
// or double quotes may contain them and loses its quotes.
func splitList(s string) []string {
	var out []string
	for _, w := range listWord.FindAllString(s, -1) {
		if n := len(w); n >= 2 && (w[0] == '\'' && w[n-1] == '\'' || w[0] == '"' && w[n-1] == '"') {
			w = w[1 : n-1]
		}
		out = append(out, w)
	}
	return out
}

var listWord = regexp.MustCompile(`'[^']*'|"[^"]*"|[^ \t]+`)
