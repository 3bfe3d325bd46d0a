// Package s3blob keeps the embedded queue's artifact and object bytes in
// an S3 bucket (AWS or any S3-compatible server), handing out presigned
// PUT and GET URLs as the real queue does for `s3` artifacts. A [Store]
// implements [localqueue.BlobStore]; package server wires it in when the
// queue configuration names a bucket.
package s3blob

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"go.dockerworker.dev/docker-worker/worker/localqueue"
)

// Config names the bucket and how to reach it.
type Config struct {
	// Endpoint is the S3 endpoint URL, e.g. http://127.0.0.1:7070 for a
	// local S3-compatible server; empty means AWS's endpoint for Region.
	Endpoint string `json:"endpoint,omitempty"`
	// Region is the bucket's region. Default us-east-1.
	Region string `json:"region,omitempty"`
	// Bucket holds the bytes. Required.
	Bucket string `json:"bucket"`
	// Prefix is prepended to every key (e.g. "artifacts/").
	Prefix string `json:"prefix,omitempty"`
	// PathStyle addresses the bucket as <endpoint>/<bucket>/<key> rather
	// than <bucket>.<endpoint>/<key>; S3-compatible servers usually need it.
	PathStyle bool `json:"pathStyle,omitempty"`
	// AccessKeyID and SecretAccessKey are static credentials; when empty,
	// the AWS default chain (environment, shared config, instance role) is
	// used.
	AccessKeyID     string `json:"accessKeyId,omitempty"`
	SecretAccessKey string `json:"secretAccessKey,omitempty"`
}

// Store is a [localqueue.BlobStore] in one bucket.
type Store struct {
	client  *s3.Client
	presign *s3.PresignClient
	bucket  string
	prefix  string
	now     func() time.Time
}

var _ localqueue.BlobStore = (*Store)(nil)

// New returns a Store for cfg. It does not contact the server; see
// [Store.EnsureBucket].
func New(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("s3blob: bucket is required")
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	opts := []func(*config.LoadOptions) error{config.WithRegion(cfg.Region)}
	switch {
	case cfg.AccessKeyID != "" && cfg.SecretAccessKey != "":
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, "")))
	case cfg.AccessKeyID != "" || cfg.SecretAccessKey != "":
		return nil, errors.New("s3blob: give both accessKeyId and secretAccessKey, or neither")
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3blob: AWS configuration: %w", err)
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(strings.TrimRight(cfg.Endpoint, "/"))
		}
		o.UsePathStyle = cfg.PathStyle
		// Presigned URLs must not demand checksum headers plain HTTP
		// clients do not send.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	return &Store{client: client, presign: s3.NewPresignClient(client), bucket: cfg.Bucket, prefix: cfg.Prefix, now: time.Now}, nil
}

func (s *Store) key(k string) string { return s.prefix + k }

// lifetime is how long a URL valid until expires lasts from now (at least a
// second: S3 rejects zero).
func (s *Store) lifetime(expires time.Time) time.Duration {
	return max(expires.Sub(s.now()), time.Second)
}

// PutURL presigns a PUT of key with the given Content-Type and, when set,
// Content-Disposition (signed headers: the upload must send exactly them).
func (s *Store) PutURL(ctx context.Context, key string, put localqueue.BlobHeaders, expires time.Time) (string, error) {
	in := &s3.PutObjectInput{
		Bucket:      aws.String(s.bucket),
		Key:         aws.String(s.key(key)),
		ContentType: aws.String(put.ContentType),
	}
	if put.ContentDisposition != "" {
		in.ContentDisposition = aws.String(put.ContentDisposition)
	}
	req, err := s.presign.PresignPutObject(ctx, in, s3.WithPresignExpires(s.lifetime(expires)))
	if err != nil {
		return "", fmt.Errorf("s3blob: presign PUT %s: %w", key, err)
	}
	return req.URL, nil
}

// GetURL presigns a GET of key.
func (s *Store) GetURL(ctx context.Context, key string, expires time.Time) (string, error) {
	req, err := s.presign.PresignGetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.key(key)),
	}, s3.WithPresignExpires(s.lifetime(expires)))
	if err != nil {
		return "", fmt.Errorf("s3blob: presign GET %s: %w", key, err)
	}
	return req.URL, nil
}

// Put uploads body as key.
func (s *Store) Put(ctx context.Context, key string, put localqueue.BlobHeaders, body []byte) error {
	in := &s3.PutObjectInput{
		Bucket:        aws.String(s.bucket),
		Key:           aws.String(s.key(key)),
		ContentType:   aws.String(put.ContentType),
		ContentLength: aws.Int64(int64(len(body))),
		Body:          strings.NewReader(string(body)),
	}
	if put.ContentDisposition != "" {
		in.ContentDisposition = aws.String(put.ContentDisposition)
	}
	_, err := s.client.PutObject(ctx, in)
	if err != nil {
		return fmt.Errorf("s3blob: put %s: %w", key, err)
	}
	return nil
}

// Exists reports whether key is in the bucket.
func (s *Store) Exists(ctx context.Context, key string) (bool, error) {
	_, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.key(key))})
	if err == nil {
		return true, nil
	}
	if isNotFound(err) {
		return false, nil
	}
	return false, fmt.Errorf("s3blob: head %s: %w", key, err)
}

// EnsureBucket creates the bucket if it does not exist.
func (s *Store) EnsureBucket(ctx context.Context) error {
	_, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.bucket)})
	if err == nil {
		return nil
	}
	if !isNotFound(err) {
		return fmt.Errorf("s3blob: bucket %s: %w", s.bucket, err)
	}
	if _, err := s.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(s.bucket)}); err != nil {
		return fmt.Errorf("s3blob: create bucket %s: %w", s.bucket, err)
	}
	return nil
}

func isNotFound(err error) bool {
	if re, ok := errors.AsType[interface {
		error
		HTTPStatusCode() int
	}](err); ok && re.HTTPStatusCode() == http.StatusNotFound {
		return true
	}
	if ae, ok := errors.AsType[smithy.APIError](err); ok {
		switch ae.ErrorCode() {
		case "NotFound", "NoSuchKey", "NoSuchBucket":
			return true
		}
	}
	return false
}
