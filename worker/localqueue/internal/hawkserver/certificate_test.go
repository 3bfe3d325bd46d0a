package hawkserver

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func TestTemporaryCredentials(t *testing.T) {
	now := time.Now()
	id := "task-client/abc/0/on/wg/wid/until/1795320599.842"
	creds, err := IssueTemporaryCredentials("static/taskcluster/queue", "issuer-secret", id,
		[]string{"queue:reclaim-task:abc/0"}, now.Add(-time.Minute), now.Add(20*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	var c Certificate
	if err := json.Unmarshal([]byte(creds.Certificate), &c); err != nil {
		t.Fatal(err)
	}
	if len(c.Seed) != 44 || c.Issuer != "static/taskcluster/queue" || c.Version != 1 {
		t.Fatalf("certificate %+v", c)
	}
	if issuer, err := CertificateIssuer([]byte(creds.Certificate)); err != nil || issuer != c.Issuer {
		t.Errorf("CertificateIssuer = %q, %v", issuer, err)
	}
	got, token, err := VerifyCertificate([]byte(creds.Certificate), id, "issuer-secret", now)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if token != creds.AccessToken || got.Scopes[0] != "queue:reclaim-task:abc/0" {
		t.Fatalf("token %q vs %q, scopes %v", token, creds.AccessToken, got.Scopes)
	}
	// The string form (as returned by the queue) verifies too.
	str, _ := json.Marshal(creds.Certificate)
	if _, _, err := VerifyCertificate(str, id, "issuer-secret", now); err != nil {
		t.Fatalf("verify string form: %v", err)
	}
	if issuer, err := CertificateIssuer(str); err != nil || issuer != c.Issuer {
		t.Errorf("CertificateIssuer of the string form = %q, %v", issuer, err)
	}
	for name, check := range map[string]func() error{
		"wrong issuer key": func() error { _, _, err := VerifyCertificate([]byte(creds.Certificate), id, "other", now); return err },
		"other clientId": func() error {
			_, _, err := VerifyCertificate([]byte(creds.Certificate), id+"x", "issuer-secret", now)
			return err
		},
		"expired": func() error {
			_, _, err := VerifyCertificate([]byte(creds.Certificate), id, "issuer-secret", now.Add(21*time.Minute))
			return err
		},
		"not valid yet": func() error {
			_, _, err := VerifyCertificate([]byte(creds.Certificate), id, "issuer-secret", now.Add(-10*time.Minute))
			return err
		},
		"not a certificate": func() error { _, _, err := VerifyCertificate([]byte(`[1]`), id, "issuer-secret", now); return err },
	} {
		if err := check(); !errors.Is(err, ErrCertificate) {
			t.Errorf("%s: err = %v, want ErrCertificate", name, err)
		}
	}
	if _, err := CertificateIssuer([]byte(`42`)); !errors.Is(err, ErrCertificate) {
		t.Errorf("CertificateIssuer(42) = %v, want ErrCertificate", err)
	}
}
