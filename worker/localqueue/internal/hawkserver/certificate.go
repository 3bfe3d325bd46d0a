package hawkserver

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.dockerworker.dev/docker-worker/worker/tc"
)

// Certificate is a Taskcluster temporary-credentials certificate.
type Certificate struct {
	Version   int      `json:"version"`
	Scopes    []string `json:"scopes"`
	Start     int64    `json:"start"`
	Expiry    int64    `json:"expiry"`
	Seed      string   `json:"seed"`
	Signature string   `json:"signature"`
	Issuer    string   `json:"issuer,omitempty"`
}

// signingString is the text the certificate signature covers; clientID is the
// temporary clientId (used only for named credentials, i.e. when Issuer is set).
func (c Certificate) signingString(clientID string) string {
	lines := []string{"version:" + strconv.Itoa(c.Version)}
	if c.Issuer != "" {
		lines = append(lines, "clientId:"+clientID, "issuer:"+c.Issuer)
	}
	lines = append(lines,
		"seed:"+c.Seed,
		"start:"+strconv.FormatInt(c.Start, 10),
		"expiry:"+strconv.FormatInt(c.Expiry, 10),
		"scopes:",
	)
	lines = append(lines, c.Scopes...)
	return strings.Join(lines, "\n")
}

func hmacBase64(key, msg string, enc *base64.Encoding) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(msg))
	return enc.EncodeToString(m.Sum(nil))
}

// deriveAccessToken computes a temporary accessToken from the issuer's
// accessToken and the certificate seed.
func deriveAccessToken(issuerAccessToken, seed string) string {
	return hmacBase64(issuerAccessToken, seed, base64.RawURLEncoding)
}

// IssueTemporaryCredentials makes named temporary credentials for clientID
// with the given scopes, valid from start to expiry, signed by the issuer.
func IssueTemporaryCredentials(issuerClientID, issuerAccessToken, clientID string, scopes []string, start, expiry time.Time) (tc.Credentials, error) {
	var seed [33]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return tc.Credentials{}, fmt.Errorf("seed: %w", err)
	}
	if scopes == nil {
		scopes = []string{}
	}
	c := Certificate{
		Version: 1,
		Scopes:  scopes,
		Start:   start.UnixMilli(),
		Expiry:  expiry.UnixMilli(),
		Seed:    base64.URLEncoding.EncodeToString(seed[:]), // 44 characters
		Issuer:  issuerClientID,
	}
	c.Signature = hmacBase64(issuerAccessToken, c.signingString(clientID), base64.StdEncoding)
	b, err := json.Marshal(c)
	if err != nil {
		return tc.Credentials{}, fmt.Errorf("encode certificate: %w", err)
	}
	return tc.Credentials{
		ClientID:    clientID,
		AccessToken: deriveAccessToken(issuerAccessToken, c.Seed),
		Certificate: string(b),
	}, nil
}

// ErrCertificate is wrapped by every certificate verification failure.
var ErrCertificate = errors.New("invalid certificate")

// decodeCertificate reads a certificate given as a JSON object or, as the
// queue hands certificates out, a JSON string holding one.
func decodeCertificate(raw []byte) (Certificate, error) {
	var c Certificate
	if err := json.Unmarshal(raw, &c); err != nil {
		var s string
		if json.Unmarshal(raw, &s) != nil || json.Unmarshal([]byte(s), &c) != nil {
			return c, fmt.Errorf("%w: not a certificate object", ErrCertificate)
		}
	}
	return c, nil
}

// CertificateIssuer returns the issuer named in a certificate ("" for
// unnamed temporary credentials, which their issuer signs in its own name),
// without verifying anything: it tells whose key verifies the certificate.
func CertificateIssuer(raw []byte) (string, error) {
	var c struct {
		Issuer string `json:"issuer"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		var s string
		if json.Unmarshal(raw, &s) != nil || json.Unmarshal([]byte(s), &c) != nil {
			return "", fmt.Errorf("%w: not a certificate object", ErrCertificate)
		}
	}
	return c.Issuer, nil
}

// VerifyCertificate checks a certificate presented by clientID against the
// issuer's accessToken at time now, and returns it with the derived temporary
// accessToken the request must be signed with.
func VerifyCertificate(raw []byte, clientID, issuerAccessToken string, now time.Time) (Certificate, string, error) {
	c, err := decodeCertificate(raw)
	if err != nil {
		return c, "", err
	}
	if c.Version != 1 {
		return c, "", fmt.Errorf("%w: unsupported version %d", ErrCertificate, c.Version)
	}
	if len(c.Seed) != 44 {
		return c, "", fmt.Errorf("%w: seed must be 44 characters", ErrCertificate)
	}
	want := hmacBase64(issuerAccessToken, c.signingString(clientID), base64.StdEncoding)
	if !hmac.Equal([]byte(want), []byte(c.Signature)) {
		return c, "", fmt.Errorf("%w: bad signature", ErrCertificate)
	}
	ms := now.UnixMilli()
	if ms < c.Start-5*60*1000 { // tolerate clock skew on start, as Taskcluster does
		return c, "", fmt.Errorf("%w: not valid yet", ErrCertificate)
	}
	if ms > c.Expiry {
		return c, "", fmt.Errorf("%w: expired at %s", ErrCertificate, time.UnixMilli(c.Expiry).UTC().Format(time.RFC3339))
	}
	return c, deriveAccessToken(issuerAccessToken, c.Seed), nil
}
