package docker

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/distribution/reference"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"
)

// Errors [Client.LoadImage] returns (wrapped) when the archive itself is
// unusable; they are the task's fault, not the worker's.
var (
	// ErrNotOneImage: the archive's manifest.json (or legacy repositories
	// file) names more or fewer than one image.
	ErrNotOneImage = errors.New("Image tarballs must only contain one image")
	// ErrUnknownArchiveFormat: the input is not a tar archive, or a tar
	// archive with neither manifest.json nor a legacy repositories file.
	ErrUnknownArchiveFormat = errors.New("Unknown docker archive format")
)

// maxArchiveMetadata bounds the size of the metadata files LoadImage holds
// in memory (manifest.json, repositories).
const maxArchiveMetadata = 8 << 20

// poison is what a refused archive ends with (two tar blocks of 0xff: any
// header the daemon reads in it fails its checksum).
var poison = func() (b [1024]byte) {
	for i := range b {
		b[i] = 0xff
	}
	return b
}()

// errLoadEnded stops the archive rewriter once the daemon has stopped
// reading.
var errLoadEnded = errors.New("the daemon stopped reading the archive")

// LoadImage loads a `docker save` archive (a plain tar stream: the caller
// decompresses) into the daemon and returns the loaded image's ID
// (sha256:...). The loaded image is tagged ref (tag "latest" if ref has
// none; a digest is refused) and with no name the archive carries.
//
// The archive is streamed to the daemon in one pass, without a temporary
// file, and rewritten on the way: manifest.json must describe exactly one
// image (else [ErrNotOneImage]) and its RepoTags become [ref]; the
// repositories file and any OCI index.json (whose annotations would name
// the image too) are dropped. An archive with only a legacy repositories
// file has it re-keyed to ref (it too must name exactly one image). An
// archive with neither, or input that is not a tar archive, fails with
// [ErrUnknownArchiveFormat]. A refused archive is cut off before its end,
// so the daemon loads nothing from it.
//
// Errors reading r are returned wrapped, so a caller can recognise its own
// (download, decompression) errors with errors.Is and errors.As. Errors the
// daemon reports while loading are returned too.
func (c *Client) LoadImage(ctx context.Context, r io.Reader, ref string) (string, error) {
	named, err := parseRef(ref)
	if err != nil {
		return "", err
	}
	if _, ok := named.(reference.Digested); ok {
		return "", fmt.Errorf("load image as %q: a loaded image is named by a tag, not a digest", ref)
	}
	tagged, ok := reference.TagNameOnly(named).(reference.NamedTagged)
	if !ok {
		return "", fmt.Errorf("load image as %q: reference has no tag", ref)
	}
	image := reference.FamiliarString(tagged)

	pr, pw := io.Pipe()
	rewritten := make(chan error, 1)
	go func() {
		err := rewriteArchive(pw, r, tagged)
		if err != nil {
			// Make sure the daemon cannot take what it received for a
			// whole archive: whatever it has read so far, these bytes
			// leave it an invalid tar header.
			_, _ = pw.Write(poison[:])
		}
		pw.CloseWithError(err) // nil: the daemon sees the archive's end
		rewritten <- err
	}()
	loadErr := c.load(ctx, pr)
	pr.CloseWithError(errLoadEnded) // unblocks the rewriter if the daemon stopped early
	rewriteErr := <-rewritten

	switch {
	case rewriteErr != nil && !errors.Is(rewriteErr, errLoadEnded):
		return "", fmt.Errorf("load image %q: %w", image, rewriteErr)
	case loadErr != nil:
		return "", fmt.Errorf("load image %q: %w", image, loadErr)
	case rewriteErr != nil:
		return "", fmt.Errorf("load image %q: %w", image, rewriteErr)
	}

	id, err := c.imageID(ctx, image)
	if isNotFound(err) {
		return "", fmt.Errorf("load image %q: the daemon reported no error but the image is absent", image)
	}
	if err != nil {
		return "", fmt.Errorf("inspect image %q after loading: %w", image, err)
	}
	return id, nil
}

// load sends archive to the daemon's image-load endpoint and reads the
// response stream to its end, returning the first error it reports.
func (c *Client) load(ctx context.Context, archive io.Reader) error {
	res, err := c.api.ImageLoad(ctx, archive, client.ImageLoadWithQuiet(true))
	if err != nil {
		return fault(err)
	}
	defer res.Close()
	dec := json.NewDecoder(res)
	for {
		var m struct {
			jsonstream.Message
			ErrorText string `json:"error"`
		}
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read the daemon's response: %w", fault(err))
		}
		switch {
		case m.Error != nil && m.Error.Message != "":
			return m.Error
		case m.ErrorText != "":
			return errors.New(m.ErrorText)
		}
	}
}

// rewriteArchive copies the tar stream src to dst, replacing the names the
// archive gives its image by ref (see [Client.LoadImage]). It holds back
// manifest.json and repositories and writes the rewritten one last, so
// their order in src does not matter. On error it returns without closing
// the tar stream.
func rewriteArchive(dst io.Writer, src io.Reader, ref reference.NamedTagged) error {
	in := &errReader{r: src}
	out := &errWriter{w: dst}
	fail := func(err error) error {
		switch {
		case in.err != nil:
			return fmt.Errorf("read image archive: %w", in.err)
		case out.err != nil:
			return out.err
		default:
			return fmt.Errorf("%w: not a valid tar archive: %w", ErrUnknownArchiveFormat, err)
		}
	}
	tr := tar.NewReader(in)
	tw := tar.NewWriter(out)
	var (
		manifest, repositories       []byte
		manifestHdr, repositoriesHdr *tar.Header
	)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fail(err)
		}
		switch path.Clean(strings.TrimPrefix(hdr.Name, "./")) {
		case "manifest.json":
			data, err := readMetadata(tr, hdr)
			if err != nil {
				return fail(err)
			}
			if manifest, err = rewriteManifest(data, ref); err != nil {
				return err
			}
			manifestHdr = hdr
			continue
		case "repositories":
			if repositories, err = readMetadata(tr, hdr); err != nil {
				return fail(err)
			}
			repositoriesHdr = hdr
			continue
		case "index.json":
			continue
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fail(err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return fail(err)
		}
	}

	switch {
	case manifest != nil:
		if err := writeFile(tw, manifestHdr, manifest); err != nil {
			return fail(err)
		}
	case repositories != nil:
		data, err := rewriteRepositories(repositories, ref)
		if err != nil {
			return err
		}
		if err := writeFile(tw, repositoriesHdr, data); err != nil {
			return fail(err)
		}
	default:
		return fmt.Errorf("%w: neither manifest.json nor repositories found", ErrUnknownArchiveFormat)
	}
	if err := tw.Close(); err != nil {
		return fail(err)
	}
	return nil
}

// readMetadata reads a small metadata file of the archive.
func readMetadata(tr *tar.Reader, hdr *tar.Header) ([]byte, error) {
	if hdr.Size > maxArchiveMetadata {
		return nil, fmt.Errorf("%s is %d bytes, more than %d", hdr.Name, hdr.Size, maxArchiveMetadata)
	}
	return io.ReadAll(tr)
}

// writeFile writes a regular file named like hdr holding data.
func writeFile(tw *tar.Writer, hdr *tar.Header, data []byte) error {
	h := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     hdr.Name,
		Mode:     hdr.Mode,
		ModTime:  hdr.ModTime,
		Size:     int64(len(data)),
	}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

// rewriteManifest checks that a docker-save manifest.json lists exactly one
// image and sets that image's RepoTags to [ref], keeping its other fields.
func rewriteManifest(data []byte, ref reference.NamedTagged) ([]byte, error) {
	var images []map[string]json.RawMessage
	if err := json.Unmarshal(data, &images); err != nil {
		return nil, fmt.Errorf("%w: manifest.json: %w", ErrUnknownArchiveFormat, err)
	}
	if len(images) != 1 {
		return nil, fmt.Errorf("%w (manifest.json lists %d)", ErrNotOneImage, len(images))
	}
	tags, err := json.Marshal([]string{reference.FamiliarString(ref)})
	if err != nil {
		return nil, err
	}
	images[0]["RepoTags"] = tags
	return json.Marshal(images)
}

// rewriteRepositories checks that a legacy repositories file names exactly
// one image (one layer ID, under any number of names) and re-keys it to
// ref.
func rewriteRepositories(data []byte, ref reference.NamedTagged) ([]byte, error) {
	var repos map[string]map[string]string
	if err := json.Unmarshal(data, &repos); err != nil {
		return nil, fmt.Errorf("%w: repositories: %w", ErrUnknownArchiveFormat, err)
	}
	ids := make(map[string]bool)
	var id string
	for _, tags := range repos {
		for _, v := range tags {
			ids[v], id = true, v
		}
	}
	if len(ids) != 1 {
		return nil, fmt.Errorf("%w (repositories names %d)", ErrNotOneImage, len(ids))
	}
	return json.Marshal(map[string]map[string]string{
		reference.FamiliarName(ref): {ref.Tag(): id},
	})
}

// errReader remembers the first error other than io.EOF its reader
// returned, telling the source's failures from the archive's.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && e.err == nil {
		e.err = err
	}
	return n, err
}

// errWriter remembers the first error its writer returned.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil && e.err == nil {
		e.err = err
	}
	return n, err
}
