// Command chaos runs tasks of varied length, artifacts and caches through a
// real worker process that is SIGKILLed and started again at random
// moments, with a fault-injecting proxy between it and the embedded queue
// (5xx answers, dropped connections, delays, an outage), and then checks
// that nothing was lost: every task resolved the right way (completed or
// failed as its command says, after retries for worker-shutdown or
// claim-expired only), no orphaned container, network or held cache
// instance, no artifact missing from a completed run, no run resolved twice
// differently, no panic in any log. It prints the counts as a table and
// exits 1 when one is not zero.
//
// Everything binds 127.0.0.1 and stops by itself; `make chaos` runs it at
// N=50. The package's test runs a small scenario under the test command.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

func main() {
	o := Options{Log: os.Stderr}
	seed := flag.Uint64("seed", uint64(time.Now().UnixNano()), "random seed (the report prints it)")
	flag.IntVar(&o.Tasks, "n", 50, "tasks")
	flag.IntVar(&o.Kills, "kills", 8, "worker SIGKILLs while the tasks run")
	flag.IntVar(&o.Capacity, "capacity", 4, "worker capacity")
	flag.BoolVar(&o.Faults, "faults", true, "inject faults between worker and queue")
	flag.DurationVar(&o.Outage, "outage", 5*time.Second, "one period in which the queue is unreachable (0: none)")
	flag.DurationVar(&o.MaxTaskTime, "max-task-time", 4*time.Second, "longest task sleep")
	flag.DurationVar(&o.Timeout, "timeout", 20*time.Minute, "bound of the whole run")
	flag.StringVar(&o.Bin, "bin", "", "docker-worker binary (default: build ./cmd/docker-worker)")
	flag.StringVar(&o.Image, "image", "docker-worker-test/busybox:latest", "task image")
	out := flag.String("out", "chaos-report.json", "where to write the JSON report")
	flag.Parse()
	o.Seed = *seed

	dir, err := os.MkdirTemp("", "docker-worker-chaos-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(2)
	}
	o.Dir = dir
	if o.Bin == "" {
		o.Bin = filepath.Join(dir, "docker-worker")
		cmd := exec.Command("go", "build", "-o", o.Bin, "./cmd/docker-worker")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "chaos: build:", err)
			os.Exit(2)
		}
	}
	rep, err := Run(context.Background(), o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos: %v (seed %d; files kept in %s)\n", err, o.Seed, dir)
		os.Exit(2)
	}
	fmt.Print(rep.Table())
	for _, p := range rep.Problems {
		fmt.Println("-", p)
	}
	if b, err := json.MarshalIndent(rep, "", "  "); err == nil {
		os.WriteFile(*out, append(b, '\n'), 0o644)
	}
	if !rep.OK() {
		fmt.Fprintf(os.Stderr, "chaos: problems found (seed %d; worker logs kept in %s)\n", o.Seed, dir)
		os.Exit(1)
	}
	os.RemoveAll(dir)
}
