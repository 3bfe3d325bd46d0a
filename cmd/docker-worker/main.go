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
	"strings"
	"syscall"
)

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
		{"status", "ask a running worker what it is doing (its status.listen endpoint)", runStatus},
		{"cot", "chain of trust: verify a downloaded set against a public key; make keys", runCot},
		{"version", "print the version and the commit it was built from", runVersion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: docker-worker <command> [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'docker-worker <command> --help' for a command's flags.")
	fmt.Fprintln(w, "'docker-worker --host worker-runner [PROFILE]' is 'run --with-worker-runner --profile PROFILE'.")
}

func main() {
	os.Exit(mainExit(os.Args[1:], os.Stdout, os.Stderr))
}

func mainExit(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		return 0
	}
	if args[0] == "--version" {
		args[0] = "version"
	}
	// worker-runner's docker-worker launcher runs "docker-worker --host
	// worker-runner production": that is run under the runner.
	if runArgs, ok, err := legacyHostArgs(args); ok {
		if err != nil {
			fmt.Fprintf(stderr, "docker-worker: %v\n\n", err)
			usage(stderr)
			return 2
		}
		args = append([]string{"run"}, runArgs...)
	}
	for _, c := range commands() {
		if c.name == args[0] {
			ctx := context.Background()
			if !ownSignals(c.name) {
				var stop context.CancelFunc
				ctx, stop = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
				defer stop()
			}
			return c.run(ctx, args[1:], stdout, cmdStderr{Writer: stderr, stdout: stdout})
		}
	}
	fmt.Fprintf(stderr, "docker-worker: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

// cmdStderr is the stderr mainExit hands to a command. It also carries
// stdout, where parse prints the help a user asked for with --help: help
// is output, while usage errors stay on stderr.
type cmdStderr struct {
	io.Writer
	stdout io.Writer
}

// helpOutput is where the help of a command whose stderr is stderr goes.
func helpOutput(stderr io.Writer) io.Writer {
	if s, ok := stderr.(cmdStderr); ok {
		return s.stdout
	}
	return stderr
}

// newFlags makes a flag set whose usage prints the synopsis and the flags
// to stderr (see parse for --help).
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
// should stop: 0 after printing the help --help asked for (to stdout), 2
// after a usage error (on stderr). A --log-level flag, when the command
// has one, must name one of logLevels.
func parse(fs *flag.FlagSet, args []string) (int, bool) {
	usage := fs.Usage
	fs.Usage = func() {} // printed below, to where it belongs
	err := fs.Parse(args)
	fs.Usage = usage
	switch {
	case errors.Is(err, flag.ErrHelp):
		stderr := fs.Output()
		fs.SetOutput(helpOutput(stderr))
		fs.Usage()
		fs.SetOutput(stderr)
		return 0, false
	case err != nil: // the flag package has printed the error
		fs.Usage()
		return 2, false
	}
	if f := fs.Lookup("log-level"); f != nil {
		if _, err := parseLevel(f.Value.String()); err != nil {
			fmt.Fprintf(fs.Output(), "invalid value %q for flag -log-level: %v\n", f.Value.String(), err)
			fs.Usage()
			return 2, false
		}
	}
	return 0, true
}

// logLevels are the values --log-level accepts.
var logLevels = []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError}

// parseLevel reads a --log-level value: one of logLevels, in any case.
func parseLevel(s string) (slog.Level, error) {
	names := make([]string, len(logLevels))
	for i, l := range logLevels {
		names[i] = strings.ToLower(l.String())
		if strings.EqualFold(s, names[i]) {
			return l, nil
		}
	}
	return 0, fmt.Errorf("must be one of %s", strings.Join(names, ", "))
}
