// Package chainoftrust is the payload feature "chainOfTrust": once the task
// log is complete it uploads the log again as public/logs/certified.log,
// then public/chain-of-trust.json, a document binding the sha256 of every
// artifact the task uploaded to the task definition and the worker that
// ran it, and public/chain-of-trust.json.sig, the raw 64-byte ed25519
// signature of exactly those JSON bytes, made with the worker's key
// (config ed25519SigningKeyLocation). Nothing is produced for a run that was
// cancelled or aborted. The document and key format are docker-worker's;
// see [Document] and [ParsePrivateKey].
package chainoftrust

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/features/internal/logcopy"
	"go.dockerworker.dev/docker-worker/worker/taskerr"
)

// Name is the feature's payload key.
const Name = "chainOfTrust"

// Artifact names and content types, as docker-worker published them.
const (
	CertifiedLog       = "public/logs/certified.log"
	DocumentName       = "public/chain-of-trust.json"
	SignatureName      = "public/chain-of-trust.json.sig"
	certifiedLogType   = "text/plain"
	documentType       = "text/plain"
	signatureType      = "application/octet-stream"
	documentVersion    = 1
	documentJSONIndent = "  "
)

// Document is the chain-of-trust document (version 1). Field order is the
// order docker-worker wrote them in.
type Document struct {
	ChainOfTrustVersion int                     `json:"chainOfTrustVersion"`
	Artifacts           map[string]ArtifactHash `json:"artifacts"`
	Task                json.RawMessage         `json:"task"`
	TaskID              string                  `json:"taskId"`
	RunID               int                     `json:"runId"`
	WorkerGroup         string                  `json:"workerGroup"`
	WorkerID            string                  `json:"workerId"`
	Environment         Environment             `json:"environment"`
}

// ArtifactHash is the hash of one artifact's (uncompressed) content.
type ArtifactHash struct {
	SHA256 string `json:"sha256"`
}

// Environment describes where the task ran. Values the worker does not
// know are left out, as docker-worker's JSON left out undefined ones.
type Environment struct {
	PublicIPAddress   string `json:"publicIpAddress,omitempty"`
	PrivateIPAddress  string `json:"privateIpAddress,omitempty"`
	ImageHash         string `json:"imageHash,omitempty"`
	ImageArtifactHash string `json:"imageArtifactHash,omitempty"`
	InstanceID        string `json:"instanceId,omitempty"`
	InstanceType      string `json:"instanceType,omitempty"`
	Region            string `json:"region,omitempty"`
}

// Marshal encodes d as docker-worker did (JSON.stringify with a 2-space
// indent: no HTML escaping, no trailing newline). These are the bytes that
// are signed.
func (d *Document) Marshal() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", documentJSONIndent)
	if err := enc.Encode(d); err != nil {
		return nil, fmt.Errorf("chain of trust document: %w", err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// ParsePrivateKey reads a signing key file: base64 of the 64-byte ed25519
// private key (seed followed by public key, tweetnacl's secret key format,
// which docker-worker used), or of a 32-byte seed.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, fmt.Errorf("signing key is not base64: %w", err)
	}
	switch len(raw) {
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(raw), nil
	case ed25519.PrivateKeySize:
		key := ed25519.NewKeyFromSeed(raw[:ed25519.SeedSize])
		if !bytes.Equal(key[ed25519.SeedSize:], raw[ed25519.SeedSize:]) {
			return nil, errors.New("signing key: its public half does not match its seed")
		}
		return key, nil
	}
	return nil, fmt.Errorf("signing key has %d bytes, want %d (or a %d-byte seed)", len(raw), ed25519.PrivateKeySize, ed25519.SeedSize)
}

// ParsePublicKey reads a public key file: base64 of the 32-byte key.
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, fmt.Errorf("public key is not base64: %w", err)
	}
	if len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("public key has %d bytes, want %d", len(raw), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(raw), nil
}

// Feature is the chain-of-trust feature.
type Feature struct {
	keyPath string
	tempDir string
	logger  *slog.Logger
}

var (
	_ features.Feature   = (*Feature)(nil)
	_ features.Extension = (*Feature)(nil)
)

// New returns the feature signing with the key file at keyPath (read for
// each task, so a replaced key takes effect at once); tempDir holds the
// per-task log copies ("" for the system default); logger receives the
// operator alert when the key is unusable at start.
func New(keyPath, tempDir string, logger *slog.Logger) *Feature {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Feature{keyPath: keyPath, tempDir: tempDir, logger: logger}
}

// Name implements features.Feature.
func (f *Feature) Name() string { return Name }

// Init implements features.Extension: it checks the signing key once at
// start, so an operator learns of a missing or broken key before any task
// asks for chain of trust. Workers built by worker/wiring never get here
// without a usable key (they refuse to start); for others, tasks that ask
// for chainOfTrust then resolve exception/internal-error, since the fault
// is the worker's, not the task's.
func (f *Feature) Init(context.Context, features.Host) error {
	if _, err := f.loadKey(); err != nil {
		f.logger.Error("[alert-operator] chain of trust signing key unusable: tasks with features.chainOfTrust will fail with internal-error",
			"key", f.keyPath, "error", err)
	}
	return nil
}

func (f *Feature) loadKey() (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(f.keyPath)
	if err != nil {
		return nil, fmt.Errorf("chain of trust: read signing key (ed25519SigningKeyLocation): %w", err)
	}
	key, err := ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("chain of trust: %s: %w", f.keyPath, err)
	}
	return key, nil
}

// NewTask implements features.Feature. An unusable signing key is an
// internal error of the worker.
func (f *Feature) NewTask(t features.Task) (features.TaskFeature, error) {
	key, err := f.loadKey()
	if err != nil {
		return nil, taskerr.InternalError(err)
	}
	return &task{f: f, t: t, key: key, Copy: logcopy.Copy{What: "chain of trust: certified log", Dir: f.tempDir, Pattern: "certified-log-*.gz"}}, nil
}

// task embeds the certified log's copy, which opens and cleans up.
type task struct {
	logcopy.Copy
	f   *Feature
	t   features.Task
	key ed25519.PrivateKey
}

var (
	_ features.Opener   = (*task)(nil)
	_ features.Finisher = (*task)(nil)
	_ features.Cleaner  = (*task)(nil)
)

// Finish publishes the certified log, the document and its signature,
// unless the run was aborted.
func (k *task) Finish(ctx context.Context, req *features.FinishRequest) error {
	if req.Aborted {
		k.t.Logger().Info("chain of trust skipped: the run was aborted")
		return nil
	}
	pub := k.t.Artifacts()
	expires := k.t.Expires()
	if err := k.Upload(ctx, pub, logcopy.Artifact{
		Name: CertifiedLog, ContentType: certifiedLogType, Expires: expires, RecordHash: true,
	}); err != nil {
		return err
	}

	doc := k.document()
	body, err := doc.Marshal()
	if err != nil {
		return err
	}
	sig := ed25519.Sign(k.key, body)
	for _, a := range []struct {
		name, contentType string
		data              []byte
	}{
		{DocumentName, documentType, body},
		{SignatureName, signatureType, sig},
	} {
		data := a.data
		if err := pub.Upload(ctx, features.Upload{
			Name:        a.name,
			ContentType: a.contentType,
			Expires:     expires,
			Size:        int64(len(data)),
			Open:        func(context.Context) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		}); err != nil {
			return fmt.Errorf("chain of trust: upload %s: %w", a.name, err)
		}
	}
	return nil
}

// document builds the chain-of-trust document from what the run uploaded.
func (k *task) document() *Document {
	w := k.t.Worker()
	arts := map[string]ArtifactHash{}
	res := k.t.Resources()
	for name, sum := range res.ArtifactHashes() {
		arts[name] = ArtifactHash{SHA256: sum}
	}
	return &Document{
		ChainOfTrustVersion: documentVersion,
		Artifacts:           arts,
		Task:                k.t.Definition(),
		TaskID:              k.t.TaskID(),
		RunID:               k.t.RunID(),
		WorkerGroup:         w.WorkerGroup,
		WorkerID:            w.WorkerID,
		Environment: Environment{
			PublicIPAddress:   w.PublicIP,
			PrivateIPAddress:  w.PrivateIP,
			ImageHash:         res.Image().ID,
			ImageArtifactHash: artifactHash(res.Image().ArtifactSHA256),
			InstanceID:        w.InstanceID,
			InstanceType:      w.InstanceType,
			Region:            w.Region,
		},
	}
}

// artifactHash is docker-worker's form of the image artifact's hash,
// "sha256:<hex>" ("" for registry images).
func artifactHash(hexSum string) string {
	if hexSum == "" {
		return ""
	}
	return "sha256:" + hexSum
}

// ErrBadSignature is returned by Verify when the signature does not match.
var ErrBadSignature = errors.New("the signature does not match the document and key")

// Verify checks that sig is key's ed25519 signature of exactly doc, and
// decodes doc.
func Verify(doc, sig []byte, key ed25519.PublicKey) (*Document, error) {
	if len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("signature has %d bytes, want %d", len(sig), ed25519.SignatureSize)
	}
	if !ed25519.Verify(key, doc, sig) {
		return nil, ErrBadSignature
	}
	var d Document
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("chain of trust document: %w", err)
	}
	if d.ChainOfTrustVersion != documentVersion {
		return nil, fmt.Errorf("chain of trust document version %d, want %d", d.ChainOfTrustVersion, documentVersion)
	}
	return &d, nil
}

// WriteNewKey generates a signing key and writes it to path (mode 0600, in
// the format ParsePrivateKey reads); path must not exist. It returns the
// public key.
func WriteNewKey(path string) (ed25519.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	_, err = fmt.Fprintln(f, base64.StdEncoding.EncodeToString(priv))
	if err = errors.Join(err, f.Close()); err != nil {
		os.Remove(path)
		return nil, err
	}
	return pub, nil
}

// EnsureKey makes sure a usable signing key is at path, generating one
// when there is no file.
func EnsureKey(path string) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		_, err = WriteNewKey(path)
		return err
	}
	if err != nil {
		return err
	}
	_, err = ParsePrivateKey(data)
	return err
}
