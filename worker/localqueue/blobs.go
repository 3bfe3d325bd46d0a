package localqueue

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// BlobStore keeps the bytes of `s3` artifacts and of objects. Keys are
// `<taskId>/<runId>/<name>` for s3 artifacts (as the real queue's bucket
// prefixes) and the object name for objects (`t/<taskId>/<runId>/<name>`
// for object artifacts). Bytes never pass through the queue's API: clients
// PUT to and GET from the URLs a BlobStore hands out, as they do with S3's
// presigned URLs. Implementations must be safe for concurrent use.
type BlobStore interface {
	// PutURL returns a URL that accepts a PUT of the bytes of key until
	// expires. The PUT must carry the headers of put; it may also carry
	// Content-Encoding, which downloads then serve ("identity" means none).
	PutURL(ctx context.Context, key string, put BlobHeaders, expires time.Time) (string, error)
	// GetURL returns a URL serving the bytes of key, with the headers they
	// were stored with, until expires.
	GetURL(ctx context.Context, key string, expires time.Time) (string, error)
	// Put stores body as the bytes of key (for small inline uploads).
	Put(ctx context.Context, key string, put BlobHeaders, body []byte) error
	// Exists reports whether the bytes of key have been uploaded.
	Exists(ctx context.Context, key string) (bool, error)
}

// BlobHeaders are the headers stored bytes are uploaded and served with.
// A URL from [BlobStore.PutURL] is signed for them: the PUT must carry
// exactly these values.
type BlobHeaders struct {
	ContentType string
	// ContentDisposition, when not empty, is required on the PUT and served
	// with the bytes (the object service asks for "attachment" on HTML, so
	// that browsers download it rather than render it).
	ContentDisposition string
}

// localBlobs is the default [BlobStore]: files on local disk, served by the
// queue itself at <RootURL>/api/queue/v1/_store/<token>. The token is
// base64url(JSON blobToken) "." base64url(HMAC-SHA256) keyed with a secret
// of the queue, so the URL needs no Hawk: holding it is the permission,
// until it expires, as with a presigned S3 URL.
type localBlobs struct {
	dir     string
	urlBase string // <RootURL>/api/queue/v1/_store/
	key     []byte
	log     *slog.Logger
}

const blobPrefix = "_store"

const (
	blobPut = "put"
	blobGet = "get"
)

type blobToken struct {
	Key                string `json:"k"`
	Op                 string `json:"o"`
	ContentType        string `json:"c,omitempty"` // put: the Content-Type the upload must carry
	ContentDisposition string `json:"d,omitempty"` // put: the Content-Disposition it must carry, if any
	Expires            int64  `json:"e"`           // unix milliseconds
}

func (b *localBlobs) sign(payload []byte) []byte {
	m := hmac.New(sha256.New, b.key)
	m.Write(payload)
	return m.Sum(nil)
}

func (b *localBlobs) url(t blobToken) string {
	payload, _ := json.Marshal(t) // strings and integers: cannot fail
	return b.urlBase + base64.RawURLEncoding.EncodeToString(payload) + "." +
		base64.RawURLEncoding.EncodeToString(b.sign(payload))
}

func (b *localBlobs) PutURL(_ context.Context, key string, put BlobHeaders, expires time.Time) (string, error) {
	return b.url(blobToken{Key: key, Op: blobPut, ContentType: put.ContentType, ContentDisposition: put.ContentDisposition, Expires: expires.UnixMilli()}), nil
}

func (b *localBlobs) GetURL(_ context.Context, key string, expires time.Time) (string, error) {
	return b.url(blobToken{Key: key, Op: blobGet, Expires: expires.UnixMilli()}), nil
}

func (b *localBlobs) Put(_ context.Context, key string, put BlobHeaders, body []byte) error {
	return b.store(key, blobHeader{ContentType: put.ContentType, ContentDisposition: put.ContentDisposition}, bytes.NewReader(body))
}

func (b *localBlobs) Exists(_ context.Context, key string) (bool, error) {
	_, err := os.Stat(b.path(key))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("stat blob %q: %w", key, err)
}

func (b *localBlobs) parseToken(s string) (blobToken, error) {
	var t blobToken
	p64, s64, ok := strings.Cut(s, ".")
	if !ok {
		return t, errors.New("malformed token")
	}
	payload, err := base64.RawURLEncoding.DecodeString(p64)
	if err != nil {
		return t, fmt.Errorf("malformed token: %w", err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(s64)
	if err != nil {
		return t, fmt.Errorf("malformed token signature: %w", err)
	}
	if !hmac.Equal(sig, b.sign(payload)) {
		return t, errors.New("bad token signature")
	}
	if err := json.Unmarshal(payload, &t); err != nil {
		return t, fmt.Errorf("malformed token: %w", err)
	}
	return t, nil
}

// path is where the bytes of key are kept: one file per key, named by a
// hash of the key (keys may hold any printable character, slashes included).
func (b *localBlobs) path(key string) string {
	h := sha256.Sum256([]byte(key))
	name := hex.EncodeToString(h[:])
	return filepath.Join(b.dir, name[:2], name)
}

// blobHeader is the first line of a stored file: the headers the bytes
// were uploaded with, to be served back with them.
type blobHeader struct {
	ContentType        string `json:"contentType,omitempty"`
	ContentEncoding    string `json:"contentEncoding,omitempty"`
	ContentDisposition string `json:"contentDisposition,omitempty"`
}

// serve answers a request for <apiBase>/_store/<token>.
func (b *localBlobs) serve(q *Queue, w http.ResponseWriter, r *http.Request, token string, now time.Time) {
	rq := &apiRequest{r: r, name: "artifactStore", now: now}
	t, err := b.parseToken(token)
	if err != nil {
		q.writeError(w, rq, apiErrorf(codeAuthenticationFailed, "storage URL: %v", err))
		return
	}
	if now.UnixMilli() > t.Expires {
		q.writeError(w, rq, apiErrorf(codeAuthenticationFailed, "storage URL expired at %s", formatTime(time.UnixMilli(t.Expires))))
		return
	}
	rq.params = map[string]string{"key": t.Key}
	switch {
	case r.Method == http.MethodPut && t.Op == blobPut:
		if got := r.Header.Get("Content-Type"); got != t.ContentType {
			err = apiErrorf(codeAuthenticationFailed, "storage URL was signed for Content-Type %q, the upload has %q", t.ContentType, got)
			break
		}
		if got := r.Header.Get("Content-Disposition"); t.ContentDisposition != "" && got != t.ContentDisposition {
			err = apiErrorf(codeAuthenticationFailed, "storage URL was signed for Content-Disposition %q, the upload has %q", t.ContentDisposition, got)
			break
		}
		hdr := blobHeader{
			ContentType:        t.ContentType,
			ContentEncoding:    r.Header.Get("Content-Encoding"),
			ContentDisposition: r.Header.Get("Content-Disposition"),
		}
		if strings.EqualFold(strings.TrimSpace(hdr.ContentEncoding), "identity") {
			hdr.ContentEncoding = "" // identity is no encoding at all
		}
		err = b.store(t.Key, hdr, r.Body)
		if err == nil {
			w.WriteHeader(http.StatusOK)
			return
		}
	case (r.Method == http.MethodGet || r.Method == http.MethodHead) && t.Op == blobGet:
		err = b.fetch(w, r, t.Key)
	default:
		err = apiErrorf(codeResourceNotFound, "this storage URL does not support %s", r.Method)
	}
	if err != nil {
		q.writeError(w, rq, err)
	}
}

// store writes the bytes and their headers durably, atomically replacing
// an earlier upload: temporary file, fsync, rename, fsync of the directory.
func (b *localBlobs) store(key string, hdr blobHeader, body io.Reader) error {
	path := b.path(key)
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("store blob: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".upload-*")
	if err != nil {
		return fmt.Errorf("store blob: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename this fails harmlessly
	line, _ := json.Marshal(hdr)
	_, err = tmp.Write(append(line, '\n'))
	if err == nil {
		_, err = io.Copy(tmp, body)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store blob %q: %w", key, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("store blob: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("store blob: sync directory: %w", err)
		}
	}
	b.log.Debug("blob stored", "key", key)
	return nil
}

// fetch serves stored bytes as they were uploaded (a gzip body stays gzip,
// with its Content-Encoding).
func (b *localBlobs) fetch(w http.ResponseWriter, r *http.Request, key string) error {
	f, err := os.Open(b.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return apiErrorf(codeResourceNotFound, "`%s` has not been uploaded.", key)
	}
	if err != nil {
		return fmt.Errorf("read blob: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("read blob: %w", err)
	}
	br := bufio.NewReader(f)
	line, err := br.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("read blob header: %w", err)
	}
	var hdr blobHeader
	if err := json.Unmarshal(line, &hdr); err != nil {
		return fmt.Errorf("read blob header: %w", err)
	}
	h := w.Header()
	if hdr.ContentType != "" {
		h.Set("Content-Type", hdr.ContentType)
	} else {
		h["Content-Type"] = nil // no sniffing: serve exactly what was stored
	}
	if hdr.ContentEncoding != "" {
		h.Set("Content-Encoding", hdr.ContentEncoding)
	}
	if hdr.ContentDisposition != "" {
		h.Set("Content-Disposition", hdr.ContentDisposition)
	}
	h.Set("Content-Length", strconv.FormatInt(st.Size()-int64(len(line)), 10))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	if _, err := io.Copy(w, br); err != nil {
		b.log.Debug("blob download interrupted", "key", key, "err", err)
	}
	return nil
}
