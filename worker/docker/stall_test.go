package docker_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/docker"
	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
)

// stallRepo is the repository, in the open test registry, of the image the
// stall tests pull. Its one layer is 4 MiB of incompressible bytes that no
// other image shares, so a pull downloads it for as long as it is absent.
const stallRepo = "docker-worker-test/stall"

// pushStallImage uploads the stall image to the open test registry (a
// no-op when it is there already) and returns its image ID.
func pushStallImage(t *testing.T) string {
	t.Helper()
	// Deterministic content: the same blobs every run.
	payload := make([]byte, 4<<20)
	rng := rand.NewChaCha8([32]byte{'d', 'w', 's', 't', 'a', 'l', 'l'})
	_, _ = rng.Read(payload)
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	if err := tw.WriteHeader(&tar.Header{Name: "payload", Mode: 0o644, Size: int64(len(payload)), ModTime: time.Unix(0, 0)}); err != nil {
		t.Fatal(err)
	}
	_, _ = tw.Write(payload)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.NoCompression)
	_, _ = zw.Write(layer.Bytes())
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	config, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config":       map[string]any{"Cmd": []string{"/payload"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{digestOf(layer.Bytes())}},
	})
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.docker.distribution.manifest.v2+json",
		"config": map[string]any{
			"mediaType": "application/vnd.docker.container.image.v1+json",
			"size":      len(config),
			"digest":    digestOf(config),
		},
		"layers": []any{map[string]any{
			"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
			"size":      gz.Len(),
			"digest":    digestOf(gz.Bytes()),
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + dockertest.Registry + "/v2/" + stallRepo
	uploadBlob(t, base, config)
	uploadBlob(t, base, gz.Bytes())
	registryDo(t, http.MethodPut, base+"/manifests/latest", "application/vnd.docker.distribution.manifest.v2+json", manifest, http.StatusCreated)
	return digestOf(config)
}

func digestOf(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }

func uploadBlob(t *testing.T, base string, blob []byte) {
	t.Helper()
	d := digestOf(blob)
	if resp := registryDo(t, http.MethodHead, base+"/blobs/"+d, "", nil, 0); resp.StatusCode == http.StatusOK {
		return
	}
	resp := registryDo(t, http.MethodPost, base+"/blobs/uploads/", "", nil, http.StatusAccepted)
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	loc = (&url.URL{Scheme: "http", Host: dockertest.Registry}).ResolveReference(loc)
	q := loc.Query()
	q.Set("digest", d)
	loc.RawQuery = q.Encode()
	registryDo(t, http.MethodPut, loc.String(), "application/octet-stream", blob, http.StatusCreated)
}

// registryDo sends one request to the test registry; a non-zero want is the
// status it must answer.
func registryDo(t *testing.T, method, u, contentType string, body []byte, want int) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("registry: %v (run test/setup-env.sh)", err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want != 0 && resp.StatusCode != want {
		t.Fatalf("%s %s: %s: %s", method, u, resp.Status, msg)
	}
	return resp
}

// stallProxy forwards loopback TCP connections to the open test registry.
// Once budget bytes have flowed from the registry (counted over all
// connections), the connection that would carry more stops forwarding
// from the registry for good, as a connection whose peer vanished does: a
// stall. Other connections then get a fresh budget while stalls remain,
// after which everything flows. (Docker does not close a stalled download
// connection when the pull is cancelled: it stays frozen until the proxy
// closes it.) The proxy closes everything when the test ends or after a
// minute and a half, whichever comes first.
type stallProxy struct {
	ln     net.Listener
	budget int64 // per stall

	mu         sync.Mutex
	left       int64 // bytes before the next stall; -1: no more stalls
	stallsLeft int   // stalls still to make
	stalls     int   // stalls made

	done chan struct{}
	wg   sync.WaitGroup
}

type proxyConn struct {
	client, server net.Conn
	closed         chan struct{}
	once           sync.Once
	frozen         bool // guarded by stallProxy.mu
}

func (c *proxyConn) close() {
	c.once.Do(func() {
		close(c.closed)
		c.client.Close()
		c.server.Close()
	})
}

func startStallProxy(t *testing.T, budget int64, stalls int) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, budget: budget, left: budget, stallsLeft: stalls, done: make(chan struct{})}
	if stalls == 0 {
		p.left = -1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	p.wg.Go(func() {
		<-ctx.Done()
		close(p.done)
		ln.Close()
	})
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		cancel()
		p.wg.Wait()
	})
	return p
}

func (p *stallProxy) addr() string { return p.ln.Addr().String() }

func (p *stallProxy) stallCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stalls
}

func (p *stallProxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.DialTimeout("tcp", dockertest.Registry, 5*time.Second)
		if err != nil {
			client.Close()
			continue
		}
		c := &proxyConn{client: client, server: server, closed: make(chan struct{})}
		p.wg.Go(func() {
			<-p.done
			c.close()
		})
		p.wg.Go(func() {
			_, _ = io.Copy(server, client)
			c.close()
		})
		p.wg.Go(func() {
			p.forward(c)
			c.close()
		})
	}
}

// forward copies the registry's bytes to the client within the budget.
func (p *stallProxy) forward(c *proxyConn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.server.Read(buf)
		for data := buf[:n]; len(data) > 0; {
			k, ok := p.take(c, len(data))
			if !ok {
				return
			}
			if _, werr := c.client.Write(data[:k]); werr != nil {
				return
			}
			data = data[k:]
		}
		if err != nil {
			return
		}
	}
}

// take returns how many of n bytes may flow to c now; false means c is
// frozen (take returned once c or the proxy is closing).
func (p *stallProxy) take(c *proxyConn, n int) (int, bool) {
	p.mu.Lock()
	switch {
	case c.frozen:
	case p.left < 0:
		p.mu.Unlock()
		return n, true
	case p.left == 0:
		c.frozen = true
		p.stalls++
		p.stallsLeft--
		if p.stallsLeft > 0 {
			p.left = p.budget
		} else {
			p.left = -1
		}
	default:
		k := min(int64(n), p.left)
		p.left -= k
		p.mu.Unlock()
		return int(k), true
	}
	p.mu.Unlock()
	select {
	case <-c.closed:
	case <-p.done:
	}
	return 0, false
}

// stallSetup returns the stall image's name behind a fresh proxy, with the
// image absent locally before and after the test.
func stallSetup(t *testing.T, c *docker.Client, stalls int) (*stallProxy, string, string) {
	t.Helper()
	id := pushStallImage(t)
	remove := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := docker.RemoveImageID(ctx, c, id); err != nil {
			t.Errorf("remove the stall image: %v", err)
		}
	}
	remove()
	t.Cleanup(remove)
	p := startStallProxy(t, 1<<20, stalls)
	return p, p.addr() + "/" + stallRepo + ":latest", id
}

func TestEnsureImageStallIsRetried(t *testing.T) {
	c := dockertest.Require(t)
	ctx := timeout(t, time.Minute)
	proxy, image, want := stallSetup(t, c, 1)
	before := docker.PullAttempts(c)

	// The timeout leaves room for a slow machine in the attempt that flows.
	p := docker.PullPolicy{Attempts: 3, BaseDelay: 200 * time.Millisecond, StallTimeout: 2 * time.Second}
	var out lockedBuffer
	id, err := c.EnsureImage(ctx, image, &out, p)
	t.Logf("progress:\n%s", out.String())
	if err != nil {
		t.Fatalf("EnsureImage: %v", err)
	}
	if id != want {
		t.Errorf("id = %q, want %q", id, want)
	}
	if n := proxy.stallCount(); n != 1 {
		t.Errorf("the proxy stalled %d times, want 1", n)
	}
	if n := docker.PullAttempts(c) - before; n != 2 {
		t.Errorf("%d attempts, want 2", n)
	}
	for _, line := range []string{
		"Pull of " + image + " stalled: no progress for 2s; attempt 1 of 3 cancelled",
		"Pulling " + image + " (attempt 2 of 3)",
	} {
		if !strings.Contains(out.String(), line+"\n") {
			t.Errorf("progress lacks %q", line)
		}
	}
}

func TestEnsureImageStallExhaustsAttempts(t *testing.T) {
	c := dockertest.Require(t)
	ctx := timeout(t, time.Minute)
	proxy, image, id := stallSetup(t, c, 100)
	before := docker.PullAttempts(c)

	p := docker.PullPolicy{Attempts: 2, BaseDelay: 200 * time.Millisecond, StallTimeout: time.Second}
	var out lockedBuffer
	start := time.Now()
	got, err := c.EnsureImage(ctx, image, &out, p)
	t.Logf("after %s: error %v\nprogress:\n%s", time.Since(start).Round(time.Millisecond), err, out.String())
	if err == nil {
		t.Fatalf("EnsureImage = %q, want an error", got)
	}
	if !errors.Is(err, docker.ErrPullStalled) || !strings.Contains(err.Error(), "failed after 2 attempts") {
		t.Errorf("error %q, want one wrapping ErrPullStalled after 2 attempts", err)
	}
	if n := docker.PullAttempts(c) - before; n != 2 {
		t.Errorf("%d attempts, want 2", n)
	}
	if n := proxy.stallCount(); n != 2 {
		t.Errorf("the proxy stalled %d times, want 2", n)
	}
	if n := strings.Count(out.String(), "stalled: no progress for 1s; attempt"); n != 2 {
		t.Errorf("%d stall lines in the progress, want 2", n)
	}
	if _, err := docker.ImageID(ctx, c, id); !docker.IsNotFound(err) {
		t.Errorf("inspect the stall image after the failed pull: %v, want not found", err)
	}
}
