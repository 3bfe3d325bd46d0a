package dockerfake

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"

	"go.dockerworker.dev/docker-worker/worker/docker"
)

// LoadImage reads a `docker save` archive from r to its end, as the daemon
// does, and tags its single image ref. The image ID is the sha256 of the
// image's configuration, as the daemon computes it, and InspectImage then
// reports that configuration. An archive holding several images fails
// with [docker.ErrNotOneImage], one without manifest.json with
// [docker.ErrUnknownArchiveFormat]; LoadErr can fail chosen loads.
func (f *Fake) LoadImage(ctx context.Context, r io.Reader, ref string) (string, error) {
	f.mu.Lock()
	f.loads = append(f.loads, ref)
	f.mu.Unlock()
	files, err := readArchive(ctx, r)
	if err != nil {
		return "", fmt.Errorf("load image %s: %w", ref, err)
	}
	if f.LoadErr != nil {
		if err := f.LoadErr(ref); err != nil {
			return "", fmt.Errorf("load image %s: %w", ref, err)
		}
	}
	raw, ok := files["manifest.json"]
	if !ok {
		return "", fmt.Errorf("load image %s: %w", ref, docker.ErrUnknownArchiveFormat)
	}
	var manifest []struct{ Config string }
	if err := json.Unmarshal(raw, &manifest); err != nil {
		return "", fmt.Errorf("load image %s: manifest.json: %w", ref, err)
	}
	if len(manifest) != 1 {
		return "", fmt.Errorf("load image %s: %w", ref, docker.ErrNotOneImage)
	}
	cfgRaw, ok := files[manifest[0].Config]
	if !ok {
		return "", fmt.Errorf("load image %s: configuration %s missing from the archive", ref, manifest[0].Config)
	}
	var cfg struct {
		Config struct {
			Entrypoint []string
			Cmd        []string
			Env        []string
			WorkingDir string
			User       string
		} `json:"config"`
	}
	if err := json.Unmarshal(cfgRaw, &cfg); err != nil {
		return "", fmt.Errorf("load image %s: configuration: %w", ref, err)
	}
	sum := sha256.Sum256(cfgRaw)
	id := "sha256:" + hex.EncodeToString(sum[:])
	c := cfg.Config
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.loaded == nil {
		f.loaded = map[string]docker.ImageConfig{}
		f.tags = map[string]string{}
	}
	f.loaded[id] = docker.ImageConfig{ID: id, Entrypoint: c.Entrypoint, Cmd: c.Cmd, Env: c.Env, WorkingDir: c.WorkingDir, User: c.User}
	f.tags[ref] = id
	return id, nil
}

// readArchive reads every regular file of a tar stream into memory.
func readArchive(ctx context.Context, r io.Reader) (map[string][]byte, error) {
	files := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return nil, context.Cause(ctx)
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", docker.ErrUnknownArchiveFormat, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		files[strings.TrimPrefix(h.Name, "./")] = b
	}
	// The daemon reads to the end of the stream, past the tar trailer.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return nil, err
	}
	return files, nil
}

// TagImage tags the loaded image id as ref.
func (f *Fake) TagImage(_ context.Context, id, ref string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.loaded[id]; !ok {
		return fmt.Errorf("tag image %s: %w: no such image", id, fs.ErrNotExist)
	}
	f.tags[ref] = id
	return nil
}

// ListTags returns the references ("repository:tag") of the loaded and
// tagged images in repository, sorted.
func (f *Fake) ListTags(_ context.Context, repository string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for ref := range f.tags {
		if repo, _, ok := cutTag(ref); ok && repo == repository {
			out = append(out, ref)
		}
	}
	slices.Sort(out)
	return out, nil
}

// RemoveTag untags ref, as `docker rmi` of one of several tags does (a
// worker restart that lost nothing, or an image collected under one name).
func (f *Fake) RemoveTag(ref string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.tags, ref)
}

// Loads returns the references passed to LoadImage, in order.
func (f *Fake) Loads() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.loads)
}

// loadedLocked finds a loaded image by reference or ID; f.mu is held.
func (f *Fake) loadedLocked(ref string) (docker.ImageConfig, bool) {
	id, ok := f.tags[ref]
	if !ok {
		id = ref
	}
	cfg, ok := f.loaded[id]
	return cfg, ok
}

// cutTag splits a reference into repository and tag; a ':' before the
// last '/' belongs to a registry's port.
func cutTag(ref string) (repo, tag string, ok bool) {
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		return ref, "", false
	}
	return ref[:i], ref[i+1:], true
}

// ImageArchive returns a small `docker save` archive (manifest.json, one
// configuration and one empty layer per image) holding one image for each
// configuration given, tagged repoTag ("" for none). Its IDs are those
// LoadImage reports. For tests of what loads images.
func ImageArchive(repoTag string, cfgs ...docker.ImageConfig) []byte {
	var buf strings.Builder
	tw := tar.NewWriter(&buf)
	add := func(name string, body []byte) {
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))})
		tw.Write(body)
	}
	type entry struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	var manifest []entry
	layer := emptyLayer()
	layerSum := sha256.Sum256(layer)
	layerName := "blobs/sha256/" + hex.EncodeToString(layerSum[:])
	add(layerName, layer)
	for _, c := range cfgs {
		raw, _ := json.Marshal(map[string]any{
			"architecture": "amd64",
			"os":           "linux",
			"config": map[string]any{
				"Entrypoint": c.Entrypoint, "Cmd": c.Cmd, "Env": c.Env, "WorkingDir": c.WorkingDir, "User": c.User,
			},
			"rootfs": map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + hex.EncodeToString(layerSum[:])}},
		})
		sum := sha256.Sum256(raw)
		name := "blobs/sha256/" + hex.EncodeToString(sum[:])
		add(name, raw)
		e := entry{Config: name, Layers: []string{layerName}}
		if repoTag != "" {
			e.RepoTags = []string{repoTag}
		}
		manifest = append(manifest, e)
	}
	raw, _ := json.Marshal(manifest)
	add("manifest.json", raw)
	tw.Close()
	return []byte(buf.String())
}

// emptyLayer is a tar stream with no entries.
func emptyLayer() []byte {
	var buf strings.Builder
	tw := tar.NewWriter(&buf)
	tw.Close()
	return []byte(buf.String())
}
