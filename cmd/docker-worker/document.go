package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"go.yaml.in/yaml/v3"
)

// readDocument reads a JSON or YAML file ("-" for stdin) into a JSON object.
func readDocument(path string) (map[string]any, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, err
	}
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: not valid JSON or YAML: %w", path, err)
	}
	m, ok := doc.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: must hold an object (a task definition or a payload)", path)
	}
	// Round-trip through JSON so YAML-only values (timestamps) become strings.
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}

// splitTask tells a task definition (it has a payload) from a bare payload.
func splitTask(doc map[string]any) (task map[string]any, payload any) {
	if p, ok := doc["payload"]; ok {
		return doc, p
	}
	return nil, doc
}
