package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"go.dockerworker.dev/docker-worker/schemas"
)

const (
	// defaultPath is where docker-worker's schemas were published
	// (s3://schemas.taskcluster.net/docker-worker/v1/payload.json), matching
	// the payload schema's $id, /schemas/docker-worker/v1/payload.json#.
	defaultPath   = "docker-worker/v1/"
	defaultRegion = "us-east-1"
	contentType   = "application/json"
)

type options struct {
	Bucket, Region, Path, Endpoint string
	PathStyle                      bool
	Dir                            string
	DryRun                         bool
}

// schemaFile is one schema to upload: its file name and bytes.
type schemaFile struct {
	Name string
	Data []byte
}

// collect returns the schemas to upload: the built-in ones when dir is
// empty, else every *.json file directly in dir, sorted by name. Each must
// be a JSON object.
func collect(dir string) ([]schemaFile, error) {
	var files []schemaFile
	if dir == "" {
		v, err := schemas.NewValidator()
		if err != nil {
			return nil, fmt.Errorf("built-in payload schema: %w", err)
		}
		files = append(files, schemaFile{Name: "payload.json", Data: v.SchemaJSON()})
	} else {
		names, err := filepath.Glob(filepath.Join(dir, "*.json"))
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", dir, err)
		}
		slices.Sort(names)
		for _, n := range names {
			data, err := os.ReadFile(n)
			if err != nil {
				return nil, fmt.Errorf("read schema: %w", err)
			}
			files = append(files, schemaFile{Name: filepath.Base(n), Data: data})
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("no *.json files in %s", dir)
		}
	}
	for _, f := range files {
		var obj map[string]any
		if err := json.Unmarshal(f.Data, &obj); err != nil {
			return nil, fmt.Errorf("%s is not a JSON schema object: %w", f.Name, err)
		}
	}
	return files, nil
}

// keyPrefix normalises a --path: no leading slash, one trailing slash
// unless empty.
func keyPrefix(p string) string {
	p = strings.Trim(p, "/")
	if p == "" {
		return ""
	}
	return p + "/"
}

// upload puts every file under opts.Path in opts.Bucket, one line on out per
// file; with opts.DryRun it only prints and contacts nothing.
func upload(ctx context.Context, opts options, files []schemaFile, out io.Writer) error {
	prefix := keyPrefix(opts.Path)
	where := "AWS"
	if opts.Endpoint != "" {
		where = opts.Endpoint
	}
	cfg, err := loadConfig(ctx, opts)
	if err != nil {
		return err
	}
	if opts.DryRun {
		for _, f := range files {
			fmt.Fprintf(out, "would upload %s (%d bytes, sha256 %s) to s3://%s/%s (Content-Type %s; endpoint %s, region %s)\n",
				f.Name, len(f.Data), digest(f.Data), opts.Bucket, prefix+f.Name, contentType, where, cfg.Region)
		}
		return nil
	}
	client := newClient(cfg, opts)
	for _, f := range files {
		key := prefix + f.Name
		_, err := client.PutObject(ctx, &s3.PutObjectInput{
			Bucket:        aws.String(opts.Bucket),
			Key:           aws.String(key),
			Body:          bytes.NewReader(f.Data),
			ContentLength: aws.Int64(int64(len(f.Data))),
			ContentType:   aws.String(contentType),
		})
		if err != nil {
			return fmt.Errorf("upload %s to s3://%s/%s: %w", f.Name, opts.Bucket, key, err)
		}
		fmt.Fprintf(out, "uploaded %s (%d bytes, sha256 %s) to s3://%s/%s\n",
			f.Name, len(f.Data), digest(f.Data), opts.Bucket, key)
	}
	return nil
}

// loadConfig reads the AWS configuration (environment and shared files;
// nothing is contacted) with the region opts or the configuration names,
// else defaultRegion.
func loadConfig(ctx context.Context, opts options) (aws.Config, error) {
	var load []func(*config.LoadOptions) error
	if opts.Region != "" {
		load = append(load, config.WithRegion(opts.Region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, load...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = defaultRegion
	}
	return cfg, nil
}

func newClient(cfg aws.Config, opts options) *s3.Client {
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(strings.TrimRight(opts.Endpoint, "/"))
		}
		o.UsePathStyle = opts.PathStyle
		// S3-compatible servers do not all accept the SDK's default
		// trailing checksums; send them only where S3 requires them.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
