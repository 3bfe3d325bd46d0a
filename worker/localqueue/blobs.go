package localqueue

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The bytes of s3 artifacts are served by the queue itself, at
// <RootURL>/api/queue/v1/_store/<token>. The token is
// base64url(JSON blobToken) "." base64url(HMAC-SHA256), keyed with a secret
// derived from the issuer's accessToken, so the URL needs no Hawk: holding
// it is the permission, until it expires.
const blobPrefix = "_store"

const (
	blobPut = "put"
	blobGet = "get"
)

type blobToken struct {
	TaskID  string `json:"t"`
	RunID   int    `json:"r"`
	Name    string `json:"n"`
	Op      string `json:"o"`
	Expires int64  `json:"e"` // unix milliseconds
}

func (q *Queue) signBlob(payload []byte) []byte {
	m := hmac.New(sha256.New, q.blobKey)
	m.Write(payload)
	return m.Sum(nil)
}

func (q *Queue) blobURL(t blobToken) string {
	payload, _ := json.Marshal(t) // strings and integers: cannot fail
	return q.apiBase + "/" + blobPrefix + "/" +
		base64.RawURLEncoding.EncodeToString(payload) + "." +
		base64.RawURLEncoding.EncodeToString(q.signBlob(payload))
}

func (q *Queue) parseBlobToken(s string) (blobToken, error) {
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
	if !hmac.Equal(sig, q.signBlob(payload)) {
		return t, errors.New("bad token signature")
	}
	if err := json.Unmarshal(payload, &t); err != nil {
		return t, fmt.Errorf("malformed token: %w", err)
	}
	return t, nil
}

// blobPath is where the bytes of an artifact are kept: one file per
// artifact, named by a hash of the name (names may hold any printable
// character, slashes included).
func (q *Queue) blobPath(taskID string, runID int, name string) string {
	h := sha256.Sum256([]byte(name))
	return filepath.Join(q.dataDir, "artifacts", taskID, strconv.Itoa(runID), hex.EncodeToString(h[:]))
}

// blobHeader is the first line of a stored artifact file: the headers the
// bytes were uploaded with, to be served back with them.
type blobHeader struct {
	ContentType     string `json:"contentType,omitempty"`
	ContentEncoding string `json:"contentEncoding,omitempty"`
}

func (q *Queue) serveBlob(w http.ResponseWriter, r *http.Request, token string, now time.Time) {
	rq := &apiRequest{r: r, name: "artifactStore", now: now}
	t, err := q.parseBlobToken(token)
	if err != nil {
		q.writeError(w, rq, apiErrorf(codeAuthenticationFailed, "artifact URL: %v", err))
		return
	}
	if now.UnixMilli() > t.Expires {
		q.writeError(w, rq, apiErrorf(codeAuthenticationFailed, "artifact URL expired at %s", formatTime(time.UnixMilli(t.Expires))))
		return
	}
	rq.params = map[string]string{"taskId": t.TaskID, "runId": strconv.Itoa(t.RunID), "name": t.Name}
	switch {
	case r.Method == http.MethodPut && t.Op == blobPut:
		err = q.putBlob(r, t)
		if err == nil {
			w.WriteHeader(http.StatusOK)
			return
		}
	case (r.Method == http.MethodGet || r.Method == http.MethodHead) && t.Op == blobGet:
		err = q.getBlob(w, r, t)
	default:
		err = apiErrorf(codeResourceNotFound, "this artifact URL does not support %s", r.Method)
	}
	if err != nil {
		q.writeError(w, rq, err)
	}
}

// putBlob stores the request body and its Content-Type and
// Content-Encoding, atomically replacing an earlier upload.
func (q *Queue) putBlob(r *http.Request, t blobToken) error {
	path := q.blobPath(t.TaskID, t.RunID, t.Name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("store artifact: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".upload-*")
	if err != nil {
		return fmt.Errorf("store artifact: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename this fails harmlessly
	hdr, _ := json.Marshal(blobHeader{
		ContentType:     r.Header.Get("Content-Type"),
		ContentEncoding: r.Header.Get("Content-Encoding"),
	})
	_, err = tmp.Write(append(hdr, '\n'))
	if err == nil {
		_, err = io.Copy(tmp, r.Body)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store artifact %s/%d/%s: %w", t.TaskID, t.RunID, t.Name, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("store artifact: %w", err)
	}
	q.log.Debug("artifact uploaded", "taskId", t.TaskID, "runId", t.RunID, "name", t.Name)
	return nil
}

// getBlob serves stored bytes as they were uploaded (a gzip body stays
// gzip, with its Content-Encoding).
func (q *Queue) getBlob(w http.ResponseWriter, r *http.Request, t blobToken) error {
	f, err := os.Open(q.blobPath(t.TaskID, t.RunID, t.Name))
	if errors.Is(err, fs.ErrNotExist) {
		return apiErrorf(codeResourceNotFound, "Artifact `%s` of run %d of task `%s` has not been uploaded.", t.Name, t.RunID, t.TaskID)
	}
	if err != nil {
		return fmt.Errorf("read artifact: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("read artifact: %w", err)
	}
	br := bufio.NewReader(f)
	line, err := br.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("read artifact header: %w", err)
	}
	var hdr blobHeader
	if err := json.Unmarshal(line, &hdr); err != nil {
		return fmt.Errorf("read artifact header: %w", err)
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
	h.Set("Content-Length", strconv.FormatInt(st.Size()-int64(len(line)), 10))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	if _, err := io.Copy(w, br); err != nil {
		q.log.Debug("artifact download interrupted", "taskId", t.TaskID, "name", t.Name, "err", err)
	}
	return nil
}
