package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/distribution/reference"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"

	"go.dockerworker.dev/docker-worker/worker/internal/backoff"
)

// PullPolicy says how often and how patiently [Client.EnsureImage] retries
// a failed pull. Before attempt n+1 it waits 2^(n-1) * BaseDelay, scaled by
// a random factor in [1-Randomization, 1+Randomization].
type PullPolicy struct {
	Attempts      int           // total attempts; values below 1 mean 1
	BaseDelay     time.Duration // wait after the first failed attempt, before jitter
	Randomization float64       // jitter fraction, clamped to [0, 1]
	Auth          *RegistryAuth
	StallTimeout  time.Duration
}

// DefaultPullPolicy returns docker-worker's defaults: 5 attempts, 15 s base
// delay, 25 % jitter.
func DefaultPullPolicy() PullPolicy {
	return PullPolicy{Attempts: 5, BaseDelay: 15 * time.Second, Randomization: 0.25}
}

// backoff is the policy's retry delay: uncapped doubling from BaseDelay
// with Randomization as the jitter factor.
func (p PullPolicy) backoff() backoff.Policy {
	return backoff.Policy{Base: p.BaseDelay, Jitter: p.Randomization}
}

// pull is one in-flight pull shared by every EnsureImage call waiting on
// the same reference.
type pull struct {
	done   chan struct{} // closed when id and err are set
	id     string
	err    error
	cancel context.CancelFunc

	waiters int // guarded by Client.mu

	outMu sync.Mutex
	outs  map[*waiter]io.Writer // progress destinations, guarded by outMu
}

type waiter struct{}

// printf writes one progress line to every waiting caller.
func (p *pull) printf(format string, args ...any) {
	line := fmt.Sprintf(format+"\n", args...)
	p.outMu.Lock()
	defer p.outMu.Unlock()
	for _, w := range p.outs {
		_, _ = io.WriteString(w, line) // progress is best effort
	}
}

// EnsureImage makes sure ref (tag "latest" if none is given) is present
// locally and returns its image ID (sha256:...).
//
// If the image is already present it writes "<image> exists in the cache."
// to progress and pulls nothing. Otherwise it pulls the image, retrying per
// p, and writes concise progress lines (per layer: started, downloaded with
// its duration, or already present) to progress. Concurrent calls for the
// same reference share one pull, which follows the policy of the call that
// started it, and every caller receives its progress; the pull is abandoned
// only when all callers' contexts are done. Writes to progress stop before
// EnsureImage returns. The error names the image.
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

	pl, w := c.joinPull(ctx, image, progress, p)
	select {
	case <-pl.done:
		c.leavePull(image, pl, w)
		return pl.id, pl.err
	case <-ctx.Done():
		c.leavePull(image, pl, w)
		return "", fmt.Errorf("pull image %q: %w", image, context.Cause(ctx))
	}
}

// joinPull registers progress with the in-flight pull of image, starting
// one if there is none.
func (c *Client) joinPull(ctx context.Context, image string, progress io.Writer, p PullPolicy) (*pull, *waiter) {
	w := &waiter{}
	c.mu.Lock()
	defer c.mu.Unlock()
	pl, ok := c.pulls[image]
	if ok {
		_, _ = fmt.Fprintf(progress, "Waiting for the pull of %s already in progress\n", image)
	} else {
		pl = &pull{done: make(chan struct{}), outs: make(map[*waiter]io.Writer)}
		c.pulls[image] = pl
	}
	pl.waiters++
	pl.outMu.Lock()
	pl.outs[w] = progress
	pl.outMu.Unlock()
	if !ok {
		// Start the pull only once the first caller's progress writer is
		// registered, so that it sees the pull's first line.
		pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		pl.cancel = cancel
		c.pullsStarted.Add(1)
		go c.runPull(pctx, image, pl, p)
	}
	return pl, w
}

// leavePull unregisters a waiter; the last one to leave an unfinished pull
// cancels it and forgets it, so later callers start afresh.
func (c *Client) leavePull(image string, pl *pull, w *waiter) {
	pl.outMu.Lock()
	delete(pl.outs, w)
	pl.outMu.Unlock()

	c.mu.Lock()
	defer c.mu.Unlock()
	pl.waiters--
	if pl.waiters > 0 {
		return
	}
	pl.cancel()
	if c.pulls[image] == pl {
		delete(c.pulls, image)
	}
}

func (c *Client) runPull(ctx context.Context, image string, pl *pull, p PullPolicy) {
	id, err := c.pullWithRetries(ctx, image, pl, p)
	c.mu.Lock()
	if c.pulls[image] == pl {
		delete(c.pulls, image)
	}
	c.mu.Unlock()
	pl.id, pl.err = id, err
	pl.cancel()
	close(pl.done)
}

func (c *Client) pullWithRetries(ctx context.Context, image string, pl *pull, p PullPolicy) (string, error) {
	attempts := max(p.Attempts, 1)
	var err error
	for n := 1; ; n++ {
		if n > 1 {
			pl.printf("Pulling %s (attempt %d of %d)", image, n, attempts)
		} else {
			pl.printf("Pulling %s", image)
		}
		err = c.pullOnce(ctx, image, pl)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("pull image %q: %w", image, err)
		}
		if n >= attempts {
			return "", fmt.Errorf("pull image %q failed after %d attempts: %w", image, attempts, err)
		}
		d := p.backoff().Delay(n)
		pl.printf("Pull of %s failed: %v; retrying in %s", image, err, d.Round(time.Millisecond))
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

// pullOnce runs one pull and turns the daemon's progress messages into
// short lines.
func (c *Client) pullOnce(ctx context.Context, image string, pl *pull) error {
	resp, err := c.api.ImagePull(ctx, image, client.ImagePullOptions{})
	if err != nil {
		return err
	}
	defer resp.Close()
	started := make(map[string]time.Time)
	for m, err := range resp.JSONMessages(ctx) {
		if err != nil {
			return err
		}
		if m.Error != nil {
			return m.Error
		}
		progressLine(pl, m, started)
	}
	return nil
}

func progressLine(pl *pull, m jsonstream.Message, started map[string]time.Time) {
	switch {
	case m.ID == "":
		if m.Status != "" {
			pl.printf("%s", m.Status) // "Digest: ...", "Status: Downloaded newer image ..."
		}
	case m.Status == "Pulling fs layer":
		started[m.ID] = time.Now()
		pl.printf("%s - Started downloading", m.ID)
	case m.Status == "Download complete":
		if t, ok := started[m.ID]; ok {
			pl.printf("%s - Downloaded in %.3f seconds", m.ID, time.Since(t).Seconds())
		} else {
			pl.printf("%s - Downloaded", m.ID)
		}
	case m.Status == "Already exists":
		pl.printf("%s - Already exists", m.ID)
	}
}

// imageID returns the ID of a local image, or an error satisfying
// isNotFound when it is absent.
func (c *Client) imageID(ctx context.Context, image string) (string, error) {
	res, err := c.api.ImageInspect(ctx, image)
	if err != nil {
		return "", err
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
		return fmt.Errorf("remove image %q: %w", image, err)
	}
	return nil
}

// normalizeRef validates ref and adds the "latest" tag when it has neither
// tag nor digest, keeping Docker's short form ("busybox:latest").
func normalizeRef(ref string) (string, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", fmt.Errorf("invalid image reference %q: %w", ref, err)
	}
	return reference.FamiliarString(reference.TagNameOnly(named)), nil
}
