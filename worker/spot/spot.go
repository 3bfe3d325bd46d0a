// Package spot watches the EC2 instance metadata service for an
// interruption notice of the instance the worker runs on: a spot
// instance-action (terminate, stop or hibernate) or the older
// spot/termination-time. The metadata service is read with the AWS SDK's
// IMDS client over IMDSv2 (a session token from PUT /latest/api/token
// accompanies every read). A notice is final: once seen, the watcher
// reports it for the rest of its life.
package spot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
)

// Metadata paths the watcher reads, under /latest/meta-data/. Both answer
// 404 until the instance is to be interrupted.
const (
	InstanceActionPath  = "spot/instance-action"
	TerminationTimePath = "spot/termination-time"
)

// DefaultInterval is the period AWS recommends for the check: the notice
// comes two minutes before the interruption.
const DefaultInterval = 5 * time.Second

// checkTimeout bounds one check (both paths, the token and the SDK's
// retries).
const checkTimeout = 20 * time.Second

// Config configures a Watcher.
type Config struct {
	// Endpoint is the metadata service's base URL; empty:
	// $AWS_EC2_METADATA_SERVICE_ENDPOINT, else the SDK's default
	// (http://169.254.169.254).
	Endpoint string
	// Interval is the period of the check (0: DefaultInterval).
	Interval time.Duration
	Logger   *slog.Logger
}

// Notice is an interruption notice.
type Notice struct {
	// Path is the metadata path that gave it.
	Path string
	// Action is instance-action's action ("terminate", "stop",
	// "hibernate"); "terminate" for spot/termination-time.
	Action string
	// Time is when the interruption happens (zero if it did not parse).
	Time time.Time
	// Body is the answer as read, trimmed.
	Body string
}

// Watcher checks for a notice.
type Watcher struct {
	client   *imds.Client
	interval time.Duration
	log      *slog.Logger

	mu       sync.Mutex
	answered bool
	notice   *Notice
}

// New returns a watcher; it reads nothing until Check or Run.
func New(cfg Config) *Watcher {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Watcher{
		client:   imds.New(imds.Options{Endpoint: cfg.Endpoint}),
		interval: cfg.Interval,
		log:      cfg.Logger,
	}
}

// State reports whether the metadata service has answered a check yet and
// the notice, if one was seen.
func (w *Watcher) State() (answered bool, notice *Notice) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.answered, w.notice
}

// Check reads the metadata service once. It returns the notice (the one
// seen earlier, if any, without reading again), nil when there is none,
// or an error when the service did not give a usable answer.
func (w *Watcher) Check(ctx context.Context) (*Notice, error) {
	if _, n := w.State(); n != nil {
		return n, nil
	}
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	n, err := w.read(ctx)
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.answered = true
	if n != nil && w.notice == nil {
		w.notice = n
	}
	return w.notice, nil
}

// read asks instance-action, then termination-time.
func (w *Watcher) read(ctx context.Context) (*Notice, error) {
	for _, path := range []string{InstanceActionPath, TerminationTimePath} {
		body, found, err := w.get(ctx, path)
		if err != nil {
			return nil, err
		}
		if found {
			return parse(path, body), nil
		}
	}
	return nil, nil
}

// get reads one path; found is false when the service answered 404.
func (w *Watcher) get(ctx context.Context, path string) (body string, found bool, err error) {
	out, err := w.client.GetMetadata(ctx, &imds.GetMetadataInput{Path: path})
	if err != nil {
		var status interface{ HTTPStatusCode() int }
		if errors.As(err, &status) && status.HTTPStatusCode() == http.StatusNotFound {
			return "", false, nil
		}
		return "", false, fmt.Errorf("instance metadata %s: %w", path, err)
	}
	defer out.Content.Close()
	b, err := io.ReadAll(io.LimitReader(out.Content, 64<<10))
	if err != nil {
		return "", false, fmt.Errorf("instance metadata %s: read: %w", path, err)
	}
	return strings.TrimSpace(string(b)), true, nil
}

// parse reads a notice. An answer that does not parse is still a notice:
// the service only answers these paths when an interruption is coming.
func parse(path, body string) *Notice {
	n := &Notice{Path: path, Action: "terminate", Body: body}
	if path == InstanceActionPath {
		var v struct {
			Action string `json:"action"`
			Time   string `json:"time"`
		}
		if json.Unmarshal([]byte(body), &v) == nil {
			if v.Action != "" {
				n.Action = v.Action
			}
			n.Time, _ = time.Parse(time.RFC3339, v.Time)
		}
		return n
	}
	n.Time, _ = time.Parse(time.RFC3339, body)
	return n
}

// Run checks every interval until a notice is seen or ctx ends; it calls
// onNotice once, with the notice, from its own goroutine. The first check
// is at once. Errors are logged and the next check goes on as usual.
func (w *Watcher) Run(ctx context.Context, onNotice func(Notice)) {
	failing := false
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := w.Check(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			if !failing {
				w.log.Warn("the instance metadata service does not answer the spot termination check", "error", err)
			}
			failing = true
		case n != nil:
			onNotice(*n)
			return
		default:
			if failing {
				w.log.Info("the instance metadata service answers the spot termination check again")
			}
			failing = false
		}
		t.Reset(w.interval)
	}
}
