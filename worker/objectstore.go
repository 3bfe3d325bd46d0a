package worker

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/worker/artifacts"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// uploadObject uploads an artifact with storage type "object" (see
// [tc.Client.UploadObjectArtifact]). Objects carry no content encoding, so
// a gzip body is stored decoded (through a temporary file, to know its
// length); its sha256 goes with the upload.
func (p publisher) uploadObject(ctx context.Context, a features.Upload) error {
	open, size, sum, cleanup, err := plainBody(ctx, a)
	if err != nil {
		return fmt.Errorf("upload artifact %s: %w", a.Name, err)
	}
	defer cleanup()
	return p.call(ctx, func(ctx context.Context, q RunQueue) error {
		return q.UploadObjectArtifact(ctx, p.r.taskID, p.r.runID, tc.ObjectUpload{
			Name: a.Name, ContentType: a.ContentType, Expires: a.Expires, Size: size, SHA256: sum, Open: open,
		})
	})
}

// plainBody returns the upload's content as stored in an object (decoded
// when gzip), its length and its sha256, and a cleanup function.
func plainBody(ctx context.Context, a features.Upload) (open func(context.Context) (io.ReadCloser, error), size int64, sum string, cleanup func(), err error) {
	noop := func() {}
	switch a.ContentEncoding {
	case "":
		if a.SHA256 != "" {
			return a.Open, a.Size, a.SHA256, noop, nil
		}
		rc, err := a.Open(ctx)
		if err != nil {
			return nil, 0, "", noop, err
		}
		defer rc.Close()
		h := sha256.New()
		n, err := io.Copy(h, rc)
		if err != nil {
			return nil, 0, "", noop, err
		}
		return a.Open, n, hex.EncodeToString(h.Sum(nil)), noop, nil
	case "gzip":
		rc, err := a.Open(ctx)
		if err != nil {
			return nil, 0, "", noop, err
		}
		defer rc.Close()
		zr, err := gzip.NewReader(rc)
		if err != nil {
			return nil, 0, "", noop, fmt.Errorf("decode gzip body: %w", err)
		}
		sp, err := artifacts.Spool(os.TempDir(), zr, false)
		if err != nil {
			return nil, 0, "", noop, fmt.Errorf("decode gzip body: %w", err)
		}
		return sp.Open, sp.Size, sp.SHA256, func() { os.Remove(sp.Path) }, nil
	}
	return nil, 0, "", noop, fmt.Errorf("content encoding %q cannot be stored in an object", a.ContentEncoding)
}
