package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"go.dockerworker.dev/docker-worker/schemas"
)

func runValidate(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("validate", "validate FILE  (a payload or a task definition; JSON or YAML; - for stdin)", stderr)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	doc, err := readDocument(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "docker-worker: %v\n", err)
		return 1
	}
	_, payload := splitTask(doc)
	raw, err := json.Marshal(payload)
	if err != nil {
		fmt.Fprintf(stderr, "docker-worker: %v\n", err)
		return 1
	}
	v, err := schemas.NewValidator()
	if err != nil {
		fmt.Fprintf(stderr, "docker-worker: %v\n", err)
		return 1
	}
	if _, problems := v.Validate(raw); len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(stdout, p.String())
		}
		fmt.Fprintf(stderr, "%s: invalid payload (%d problems)\n", fs.Arg(0), len(problems))
		return 1
	}
	fmt.Fprintf(stdout, "%s: valid\n", fs.Arg(0))
	return 0
}
