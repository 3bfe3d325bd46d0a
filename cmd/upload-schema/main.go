// Command upload-schema publishes docker-worker's JSON schemas to an S3
// bucket, each as <path><file name> with Content-Type application/json.
// By default it uploads the schemas built into it (schemas/payload.json,
// the one the worker validates payloads with); --dir uploads every *.json
// file of a directory instead, e.g. the schemas/ of a release tarball.
//
// Flags fall back to environment variables (DW_SCHEMA_BUCKET,
// DW_SCHEMA_REGION, DW_SCHEMA_PATH, DW_SCHEMA_ENDPOINT,
// DW_SCHEMA_PATH_STYLE); credentials come from the AWS default chain
// (environment, shared files, instance role). --dry-run prints what would
// go where and contacts nothing.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole command; it returns the exit code: 0 done, 1 failed,
// 2 usage error.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("upload-schema", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opts options
	envDefault := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	fs.StringVar(&opts.Bucket, "bucket", envDefault("DW_SCHEMA_BUCKET", ""), "S3 bucket to upload to (env DW_SCHEMA_BUCKET; required)")
	fs.StringVar(&opts.Region, "region", envDefault("DW_SCHEMA_REGION", ""), "bucket region (env DW_SCHEMA_REGION; default: the AWS configuration's region, else "+defaultRegion+")")
	fs.StringVar(&opts.Path, "path", envDefault("DW_SCHEMA_PATH", defaultPath), "key prefix the schema file names are put under (env DW_SCHEMA_PATH)")
	fs.StringVar(&opts.Endpoint, "endpoint", envDefault("DW_SCHEMA_ENDPOINT", ""), "S3 endpoint URL for an S3-compatible server (env DW_SCHEMA_ENDPOINT; default: AWS)")
	pathStyle, err := strconv.ParseBool(envDefault("DW_SCHEMA_PATH_STYLE", "false"))
	if err != nil {
		fmt.Fprintf(stderr, "upload-schema: DW_SCHEMA_PATH_STYLE: %v\n", err)
		return 2
	}
	fs.BoolVar(&opts.PathStyle, "path-style", pathStyle, "address the bucket as <endpoint>/<bucket>/<key>, as most S3-compatible servers need (env DW_SCHEMA_PATH_STYLE)")
	fs.StringVar(&opts.Dir, "dir", "", "upload every *.json file of this directory instead of the schemas built into this tool")
	fs.BoolVar(&opts.DryRun, "dry-run", false, "print what would be uploaded where, and upload nothing")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: upload-schema --bucket BUCKET [flags]\n\nUploads docker-worker's JSON schemas to S3 as <path><name>, Content-Type application/json.\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "upload-schema: unexpected arguments %q\n", fs.Args())
		fs.Usage()
		return 2
	}
	if opts.Bucket == "" {
		fmt.Fprintln(stderr, "upload-schema: --bucket (or DW_SCHEMA_BUCKET) is required")
		fs.Usage()
		return 2
	}
	files, err := collect(opts.Dir)
	if err != nil {
		fmt.Fprintf(stderr, "upload-schema: %v\n", err)
		return 1
	}
	if err := upload(ctx, opts, files, stdout); err != nil {
		fmt.Fprintf(stderr, "upload-schema: %v\n", err)
		return 1
	}
	return 0
}
