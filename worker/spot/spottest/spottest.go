// Package spottest is an EC2 instance metadata service for tests: it
// serves meta-data paths (the spot interruption notices, host facts),
// dynamic data (the instance identity document and its signature) and
// user-data behind IMDSv2's session tokens
// (PUT /latest/api/token, then the token in X-aws-ec2-metadata-token on
// every read; a read without a valid token is refused 401, as on an
// instance that requires IMDSv2). It listens on 127.0.0.1 and closes with
// the test.
package spottest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// Headers of the IMDSv2 token flow.
const (
	TokenHeader    = "X-aws-ec2-metadata-token"
	TokenTTLHeader = "X-aws-ec2-metadata-token-ttl-seconds"
)

// Server is the metadata service.
type Server struct {
	// URL is the base URL, the SDK's endpoint.
	URL string

	mu       sync.Mutex
	tokens   map[string]bool
	answers  map[string]string // metadata path → body; absent: 404
	reads    map[string]int    // metadata path → authorised reads
	refused  int               // reads without a valid token
	failing  bool
	notified chan struct{} // closed at the first authorised read
}

// Start starts a server with no notice.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		tokens:   map[string]bool{},
		answers:  map[string]string{},
		reads:    map[string]int{},
		notified: make(chan struct{}),
	}
	srv := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Set makes path (under /latest/meta-data/, e.g. "spot/instance-action")
// answer body.
func (s *Server) Set(path, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answers[path] = body
}

// SetDynamic makes path under /latest/dynamic/ (e.g.
// "instance-identity/document") answer body.
func (s *Server) SetDynamic(path, body string) {
	s.Set(dynamicPrefix+path, body)
}

// SetUserData makes /latest/user-data answer body.
func (s *Server) SetUserData(body string) {
	s.Set(userDataKey, body)
}

// SetIdentity serves doc as the instance identity document and its
// signature made with key (RSA PKCS #1 v1.5 over SHA-256, base64), the
// form of EC2's instance-identity/signature; a service that trusts key's
// public half verifies it.
func (s *Server) SetIdentity(doc string, key *rsa.PrivateKey) error {
	sum := sha256.Sum256([]byte(doc))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		return err
	}
	s.SetDynamic("instance-identity/document", doc)
	s.SetDynamic("instance-identity/signature", base64.StdEncoding.EncodeToString(sig))
	return nil
}

// Keys of the non-meta-data answers in Server.answers.
const (
	dynamicPrefix = "\x00dynamic/"
	userDataKey   = "\x00user-data"
)

// SetFailing makes every read answer 500 (true) or answer normally again.
func (s *Server) SetFailing(failing bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failing = failing
}

// Reads is how many authorised reads of meta-data path there were.
func (s *Server) Reads(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads[path]
}

// Refused is how many reads came without a valid token.
func (s *Server) Refused() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

// FirstRead is closed at the first authorised read of any path.
func (s *Server) FirstRead() <-chan struct{} { return s.notified }

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/latest/api/token" {
		if r.Method != http.MethodPut || r.Header.Get(TokenTTLHeader) == "" {
			http.Error(w, "token requests are PUT with a TTL", http.StatusBadRequest)
			return
		}
		b := make([]byte, 16)
		rand.Read(b)
		tok := hex.EncodeToString(b)
		s.mu.Lock()
		s.tokens[tok] = true
		s.mu.Unlock()
		w.Header().Set(TokenTTLHeader, r.Header.Get(TokenTTLHeader))
		w.Write([]byte(tok))
		return
	}
	path, ok := strings.CutPrefix(r.URL.Path, "/latest/meta-data/")
	if p, dyn := strings.CutPrefix(r.URL.Path, "/latest/dynamic/"); dyn {
		path, ok = dynamicPrefix+p, true
	} else if r.URL.Path == "/latest/user-data" {
		path, ok = userDataKey, true
	}
	if !ok || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	if !s.tokens[r.Header.Get(TokenHeader)] {
		s.refused++
		s.mu.Unlock()
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	s.reads[path]++
	select {
	case <-s.notified:
	default:
		close(s.notified)
	}
	body, found := s.answers[path]
	failing := s.failing
	s.mu.Unlock()
	switch {
	case failing:
		http.Error(w, "Internal Server Error", http.StatusInternalServerError)
	case !found:
		http.NotFound(w, r)
	default:
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(body))
	}
}
