package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// decode overlays the YAML (or JSON) document data onto c. Unknown keys and
// type errors are all reported, each with its key path and line.
func decode(data []byte, c *Config) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("not valid YAML: %w", err)
	}
	if len(doc.Content) == 0 {
		return nil // empty file: defaults
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: the config must be a mapping of keys to values", root.Line)
	}
	var errs []error
	checkKeys(root, reflect.TypeOf(*c), "", &errs)
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := root.Decode(c); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			for _, m := range te.Errors {
				errs = append(errs, errors.New(m))
			}
			return errors.Join(errs...)
		}
		return err
	}
	return nil
}

// checkKeys walks a mapping node against struct type t and records every key
// that t has no field for.
func checkKeys(n *yaml.Node, t reflect.Type, prefix string, errs *[]error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return // the decoder reports the type error
		}
		fields := map[string]reflect.Type{}
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name != "" && name != "-" {
				fields[name] = f.Type
			}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				*errs = append(*errs, fmt.Errorf("line %d: unknown key %q", k.Line, prefix+k.Value))
				continue
			}
			checkKeys(v, ft, prefix+k.Value+".", errs)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			checkKeys(n.Content[i+1], t.Elem(), prefix+n.Content[i].Value+".", errs)
		}
	}
}
