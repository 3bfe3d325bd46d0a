package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/moby/moby/api/pkg/authconfig"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/client"

	"go.dockerworker.dev/docker-worker/worker/flight"

	"go.dockerworker.dev/docker-worker/worker/internal/backoff"
)

// PullPolicy says how [Client.EnsureImage] pulls: with which credentials,
// how often and how patiently it retries a failed pull, and when it gives up
// on a pull that makes no progress.
//
// Before attempt n+1 it waits 2^(n-1) * BaseDelay, scaled by a random factor
// in [1-Randomization, 1+Randomization]. A refusal from the registry (the
// image does not exist, or the credentials do not allow pulling it; see
// [ErrPullRefused]) is never retried.
type PullPolicy struct {
	Attempts      int           // total attempts; values below 1 mean 1
	BaseDelay     time.Duration // wait after the first failed attempt, before jitter
	Randomization float64       // jitter fraction, clamped to [0, 1]

	// Auth, when set, is sent to the daemon with the pull (the
	// X-Registry-Auth header), which presents it to the registry.
	Auth *RegistryAuth

	// StallTimeout, when positive, cancels an attempt whose progress stream
	// has produced no message for that long; the attempt counts as failed
	// (see [ErrPullStalled]) and is retried like any other failure. Zero
	// turns stall detection off.
	StallTimeout time.Duration
}

// RegistryAuth is a registry account used to pull an image.
type RegistryAuth struct {
	Username, Password string
	// ServerAddress is the registry's address (e.g. "registry.example.com"
	// or "127.0.0.1:5001").
	ServerAddress string
}

// String names the account without its password, so that printing an
// auth never reveals the secret; GoString and LogValue do the same for %#v
// and log/slog.
func (a RegistryAuth) String() string {
	return fmt.Sprintf("%s@%s", a.Username, a.ServerAddress)
}

// GoString is [RegistryAuth.String].
func (a RegistryAuth) GoString() string { return a.String() }

// LogValue is [RegistryAuth.String].
func (a RegistryAuth) LogValue() slog.Value { return slog.StringValue(a.String()) }

// encode returns the X-Registry-Auth header value for a.
func (a *RegistryAuth) encode() (string, error) {
	if a == nil {
		return "", nil
	}
	s, err := authconfig.Encode(registry.AuthConfig{
		Username:      a.Username,
		Password:      a.Password,
		ServerAddress: a.ServerAddress,
	})
	if err != nil {
		return "", fmt.Errorf("encode registry credentials for %s: %w", a, err)
	}
	return s, nil
}

// DefaultPullPolicy returns docker-worker's defaults: 5 attempts, 15 s base
// delay, 25 % jitter, no credentials and no stall detection.
func DefaultPullPolicy() PullPolicy {
	return PullPolicy{Attempts: 5, BaseDelay: 15 * time.Second, Randomization: 0.25}
}

// ErrPullRefused marks a pull the registry refused because the image does
// not exist (404, "manifest unknown", "name unknown") or the credentials do
// not allow it (401, "unauthorized", "denied", "no basic auth
// credentials"). Such pulls are not retried.
var ErrPullRefused = errors.New("the registry refused the pull")

// ErrPullStalled marks a pull attempt cancelled because its progress stream
// was silent for [PullPolicy.StallTimeout].
var ErrPullStalled = errors.New("pull stalled")

// backoff is the policy's retry delay: uncapped doubling from BaseDelay
// with Randomization as the jitter factor.
func (p PullPolicy) backoff() backoff.Policy {
	return backoff.Policy{Base: p.BaseDelay, Jitter: p.Randomization}
}

// pullKey identifies a pull that callers may share: the same image with
// the same credentials (or none).
type pullKey struct {
	image string
	auth  RegistryAuth
}

func keyFor(image string, p PullPolicy) pullKey {
	k := pullKey{image: image}
	if p.Auth != nil {
		k.auth = *p.Auth
	}
	return k
}

// pull is one in-flight pull shared by every EnsureImage call waiting on
// the same reference and credentials; its result is the image ID.
type pull = flight.Call[string]

// pullf writes one progress line to every caller waiting on pl.
func pullf(pl *pull, format string, args ...any) {
	pl.Write(fmt.Sprintf(format+"\n", args...))
}

// EnsureImage makes sure ref (tag "latest" if it has neither tag nor
// digest) is present locally and returns its image ID (sha256:...). A
// digest-pinned reference (name@sha256:...) is looked up and pulled by its
// digest; a tag next to a digest is ignored, as Docker ignores it.
//
// If the image is already present it writes "<image> exists in the cache."
// to progress and pulls nothing. Otherwise it pulls the image, retrying per
// p, and writes concise progress lines (per layer: started, downloaded with
// its duration, or already present; a line for each stalled or failed
// attempt) to progress. It sends p.Auth, if set, with the pull.
//
// Concurrent calls for the same reference with the same credentials (or
// none) share one pull, which follows the policy of the call that started
// it, and every caller receives its progress; the pull is abandoned only
// when all its callers' contexts are done. Calls with different
// credentials never share a pull, so that no caller waits on, or receives
// the refusal of, a pull made with another caller's credentials; the daemon
// still shares their layer downloads. Writes to progress stop before
// EnsureImage returns.
//
// The error names the image. It wraps [ErrPullRefused] when the registry
// refused the pull, and [ErrPullStalled] when the last attempt stalled.
func (c *Client) EnsureImage(ctx context.Context, ref string, progress io.Writer, p PullPolicy) (string, error) {
	image, err := normalizeRef(ref)
	if err != nil {
		return "", err
	}
	if progress == nil {
		progress = io.Discard
	}

	id, err := c.imageID(ctx, image)
	switch {
	case err == nil:
		_, _ = fmt.Fprintf(progress, "%s exists in the cache.\n", image)
		return id, nil
	case !isNotFound(err):
		return "", fmt.Errorf("inspect image %q: %w", image, err)
	}

	key := keyFor(image, p)
	wait := fmt.Sprintf("Waiting for the pull of %s already in progress\n", key.image)
	id, err = c.pulls.Do(ctx, key, progress, wait, func(ctx context.Context, pl *pull) (string, error) {
		c.pullsStarted.Add(1)
		return c.pullWithRetries(ctx, key.image, pl, p)
	})
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Cause(ctx)) {
		return "", fmt.Errorf("pull image %q: %w", image, err)
	}
	return id, err
}

func (c *Client) pullWithRetries(ctx context.Context, image string, pl *pull, p PullPolicy) (string, error) {
	auth, err := p.Auth.encode()
	if err != nil {
		return "", fmt.Errorf("pull image %q: %w", image, err)
	}
	opts := client.ImagePullOptions{RegistryAuth: auth}
	attempts := max(p.Attempts, 1)
	for n := 1; ; n++ {
		if n > 1 {
			pullf(pl, "Pulling %s (attempt %d of %d)", image, n, attempts)
		} else {
			pullf(pl, "Pulling %s", image)
		}
		c.pullAttempts.Add(1)
		err = c.pullOnce(ctx, image, pl, opts, p.StallTimeout)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("pull image %q: %w", image, err)
		}
		if errors.Is(err, ErrPullStalled) {
			pullf(pl, "Pull of %s stalled: no progress for %s; attempt %d of %d cancelled", image, p.StallTimeout, n, attempts)
		}
		if refused(err) {
			return "", fmt.Errorf("pull image %q: %w: %w", image, ErrPullRefused, err)
		}
		if _, ok := AsDaemonError(err); ok {
			// Another attempt cannot succeed before the daemon is back.
			return "", fmt.Errorf("pull image %q: %w", image, err)
		}
		if n >= attempts {
			return "", fmt.Errorf("pull image %q failed after %d attempts: %w", image, attempts, err)
		}
		d := p.backoff().Delay(n)
		pullf(pl, "Pull of %s failed: %v; retrying in %s", image, err, d.Round(time.Millisecond))
		if werr := backoff.Wait(ctx, d); werr != nil {
			return "", fmt.Errorf("pull image %q: %w", image, errors.Join(err, werr))
		}
	}

	id, err := c.imageID(ctx, image)
	if isNotFound(err) {
		return "", fmt.Errorf("pull image %q: image missing after pulling", image)
	}
	if err != nil {
		return "", fmt.Errorf("inspect image %q after pulling: %w", image, err)
	}
	return id, nil
}

// pullOnce runs one pull attempt and turns the daemon's progress messages
// into short lines. With a positive stall timeout, it cancels the attempt
// once the daemon has been silent that long, returning an error wrapping
// [ErrPullStalled].
func (c *Client) pullOnce(ctx context.Context, image string, pl *pull, opts client.ImagePullOptions, stall time.Duration) (err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var watchdog *time.Timer
	if stall > 0 {
		stalled := fmt.Errorf("%w: no progress for %s", ErrPullStalled, stall)
		watchdog = time.AfterFunc(stall, func() { cancel(stalled) })
		defer watchdog.Stop()
		defer func() {
			// A cancelled attempt reports why it was cancelled.
			if cause := context.Cause(ctx); err != nil && errors.Is(cause, ErrPullStalled) {
				err = cause
			}
		}()
	}

	resp, err := c.api.ImagePull(ctx, image, opts)
	if err != nil {
		return fault(err)
	}
	defer resp.Close()
	started := make(map[string]time.Time)
	for m, err := range resp.JSONMessages(ctx) {
		if err != nil {
			return fault(err)
		}
		if watchdog != nil {
			watchdog.Reset(stall)
		}
		if m.Error != nil {
			return m.Error
		}
		progressLine(pl, m, started)
	}
	return nil
}

// refusedMessages are the fragments of the daemon's and registries' error
// messages that say the image does not exist or may not be pulled with the
// given credentials. The daemon reports some of these (a missing or
// rejected login) as internal errors, so the status alone is not enough.
var refusedMessages = []string{
	"manifest unknown",
	"name unknown",
	"unauthorized",
	"denied",
	"no basic auth credentials",
	"authentication required",
}

// refused reports whether err is the registry refusing the pull, which no
// retry can fix.
func refused(err error) bool {
	if errors.Is(err, ErrPullStalled) {
		return false
	}
	if cerrdefs.IsNotFound(err) || cerrdefs.IsUnauthorized(err) || cerrdefs.IsPermissionDenied(err) {
		return true
	}
	msg := strings.ToLower(err.Error())
	for _, m := range refusedMessages {
		if strings.Contains(msg, m) {
			return true
		}
	}
	return false
}

func progressLine(pl *pull, m jsonstream.Message, started map[string]time.Time) {
	switch {
	case m.ID == "":
		if m.Status != "" {
			pullf(pl, "%s", m.Status) // "Digest: ...", "Status: Downloaded newer image ..."
		}
	case m.Status == "Pulling fs layer":
		started[m.ID] = time.Now()
		pullf(pl, "%s - Started downloading", m.ID)
	case m.Status == "Download complete":
		if t, ok := started[m.ID]; ok {
			pullf(pl, "%s - Downloaded in %.3f seconds", m.ID, time.Since(t).Seconds())
		} else {
			pullf(pl, "%s - Downloaded", m.ID)
		}
	case m.Status == "Already exists":
		pullf(pl, "%s - Already exists", m.ID)
	}
}

// imageID returns the ID of a local image, or an error satisfying
// isNotFound when it is absent.
func (c *Client) imageID(ctx context.Context, image string) (string, error) {
	res, err := c.api.ImageInspect(ctx, image)
	if err != nil {
		return "", fault(err)
	}
	return res.ID, nil
}

// RemoveImage untags ref and deletes the image if nothing else refers to
// it. A missing image is not an error. It exists for tests of the pull
// path.
func (c *Client) RemoveImage(ctx context.Context, ref string) error {
	image, err := normalizeRef(ref)
	if err != nil {
		return err
	}
	_, err = c.api.ImageRemove(ctx, image, client.ImageRemoveOptions{})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("remove image %q: %w", image, fault(err))
	}
	return nil
}

// normalizeRef validates ref and adds the "latest" tag when it has neither
// tag nor digest, keeping Docker's short form ("busybox:latest"). A
// digest-pinned reference keeps its digest and loses any tag
// ("busybox:1@sha256:..." becomes "busybox@sha256:..."): the daemon pulls
// and finds such an image by digest alone.
func normalizeRef(ref string) (string, error) {
	named, err := parseRef(ref)
	if err != nil {
		return "", err
	}
	if d, ok := named.(reference.Digested); ok {
		canonical, err := reference.WithDigest(reference.TrimNamed(named), d.Digest())
		if err != nil {
			return "", fmt.Errorf("invalid image reference %q: %w", ref, err)
		}
		return reference.FamiliarString(canonical), nil
	}
	return reference.FamiliarString(reference.TagNameOnly(named)), nil
}

// parseRef parses an image reference in Docker's familiar or full form.
func parseRef(ref string) (reference.Named, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return nil, fmt.Errorf("invalid image reference %q: %w", ref, err)
	}
	return named, nil
}
