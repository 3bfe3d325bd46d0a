package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"go.dockerworker.dev/docker-worker/schemas"
	"go.dockerworker.dev/docker-worker/worker"
	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/wiring"
)

// runValidate runs the check a worker runs on a payload before starting
// anything: the schema, artifact expiries (for a task definition), and what
// the worker's features can serve given its config (--config; without it,
// the defaults).
func runValidate(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("validate", "validate [--config WORKER_CONFIG] FILE  (a payload or a task definition; JSON or YAML; - for stdin)", stderr)
	cfgPath := fs.String("config", "", "worker config whose feature switches apply (default: the built-in defaults)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	cfg := config.Default()
	if *cfgPath != "" {
		if err := config.ReadFile(*cfgPath, cfg); err != nil {
			fmt.Fprintf(stderr, "docker-worker: bad configuration:\n%v\n", err)
			return 2
		}
		if err := wiring.CheckFeatureKeys(cfg, nil); err != nil {
			fmt.Fprintf(stderr, "docker-worker: bad configuration: %s: %v\n", *cfgPath, err)
			return 2
		}
	}
	doc, err := readDocument(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "docker-worker: %v\n", err)
		return 2
	}
	task, payload := splitTask(doc)
	raw, err := json.Marshal(payload)
	if err != nil {
		fmt.Fprintf(stderr, "docker-worker: %v\n", err)
		return 2
	}
	var expires time.Time
	if s, ok := task["expires"].(string); ok {
		if expires, err = time.Parse(time.RFC3339, s); err != nil {
			fmt.Fprintf(stderr, "docker-worker: task expires %q: %v\n", s, err)
			return 2
		}
	}
	v, err := schemas.NewValidator()
	if err != nil {
		fmt.Fprintf(stderr, "docker-worker: %v\n", err)
		return 1
	}
	_, invalid, unsupported := worker.CheckPayload(v, wiring.PayloadCheck(cfg), raw, expires)
	for _, group := range []struct {
		heading  string
		problems []schemas.Problem
	}{{worker.InvalidHeading, invalid}, {worker.UnsupportedHeading, unsupported}} {
		if len(group.problems) == 0 {
			continue
		}
		fmt.Fprintln(stdout, group.heading)
		for _, p := range group.problems {
			fmt.Fprintln(stdout, " "+p.String())
		}
	}
	if n := len(invalid) + len(unsupported); n > 0 {
		fmt.Fprintf(stderr, "%s: the worker would refuse this payload (malformed-payload, %d problems)\n", fs.Arg(0), n)
		return 1
	}
	fmt.Fprintf(stdout, "%s: valid\n", fs.Arg(0))
	return 0
}
