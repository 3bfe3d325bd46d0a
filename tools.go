//go:build tools

// Package tools pins module dependencies that are used before any package imports them.
package tools

import (
	_ "github.com/google/go-cmp/cmp"
	_ "github.com/moby/moby/api/pkg/stdcopy"
	_ "github.com/moby/moby/client"
	_ "github.com/santhosh-tekuri/jsonschema/v6"
	_ "gopkg.in/yaml.v3"
)
