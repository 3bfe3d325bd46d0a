// Command docker-worker runs Taskcluster docker-worker payloads in Docker
// containers. Subcommands: run (the worker daemon), queue (the embedded
// Taskcluster-compatible queue), dev (queue and worker in one process),
// submit, validate and version. This package only wires things together.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// version is the worker version printed in task log headers.
const version = "0.1.0"

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

// ownSignals are the commands that handle SIGINT and SIGTERM themselves
// (the worker's graceful and immediate stops); the others get a context
// that SIGINT and SIGTERM cancel.
func ownSignals(name string) bool { return name == "run" || name == "dev" }

func commands() []command {
	return []command{
		{"run", "run the worker: claim tasks from a queue and run them", runWorker},
		{"queue", "serve the embedded Taskcluster-compatible queue", runQueue},
		{"dev", "run the embedded queue and a worker in one process", runDev},
		{"task", "inspect and act on a task: status, log, artifacts, cancel, rerun", runTask},
		{"submit", "submit a task (or a bare payload), print its log, exit with its result", runSubmit},
		{"validate", "check a payload (or task definition) against the payload schema", runValidate},
		{"cot", "chain of trust: verify a downloaded set against a public key; make keys", runCot},
		{"version", "print the version", func(_ context.Context, _ []string, stdout, _ io.Writer) int {
			fmt.Fprintln(stdout, "docker-worker", version)
			return 0
		}},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: docker-worker <command> [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'docker-worker <command> --help' for a command's flags.")
}

func main() {
	os.Exit(mainExit(os.Args[1:], os.Stdout, os.Stderr))
}

func mainExit(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "--version" {
		args[0] = "version"
	}
	for _, c := range commands() {
		if c.name == args[0] {
			ctx := context.Background()
			if !ownSignals(c.name) {
				var stop context.CancelFunc
				ctx, stop = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
				defer stop()
			}
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "docker-worker: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

// newFlags makes a flag set whose --help prints the summary and the flags.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: docker-worker %s\n\nflags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args; it returns an exit code and false when the command
// should stop (help requested or bad flags).
func parse(fs *flag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	return 0, true
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}
