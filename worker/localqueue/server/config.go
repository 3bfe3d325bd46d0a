package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"go.dockerworker.dev/docker-worker/worker/localqueue"
)

// Config is the queue's configuration file, `docker-worker queue --config`
// (YAML, or JSON, which is YAML too). Command-line flags override Listen,
// RootURL and DataDir (see the command).
type Config struct {
	// Listen is the address the queue listens on, e.g. 127.0.0.1:8080.
	Listen string `yaml:"listen"`
	// RootURL is the rootUrl clients use; empty means http://<listen address>.
	RootURL string `yaml:"rootUrl"`
	// DataDir holds the queue's state (queue.db), its generated client
	// (client.json) and, with local storage, artifact bytes (blobs/).
	DataDir string `yaml:"dataDir"`
	// Clients may call the queue; their scopes decide what they may do.
	Clients []Client `yaml:"clients"`
	// AnonymousScopes replaces the default scopes of requests without
	// credentials when set (an empty list grants none).
	AnonymousScopes *[]string `yaml:"anonymousScopes"`
	// Roles expand scopes as Taskcluster's roles do: whoever holds
	// `assume:<roleId>` (a client, a task's scopes, the anonymous scopes)
	// has the role's scopes too; a roleId ending in `*` matches by prefix
	// and puts what its `*` matched in place of `<..>` in its scopes.
	Roles []Role `yaml:"roles"`
	// ClaimTimeout is how long a claim lasts; zero means the queue's default.
	ClaimTimeout time.Duration `yaml:"claimTimeout"`
	Storage      Storage       `yaml:"storage"`
	Pulse        Pulse         `yaml:"pulse"`
}

// Client is a permanent client of the queue.
type Client struct {
	ClientID    string   `yaml:"clientId"`
	AccessToken string   `yaml:"accessToken"`
	Scopes      []string `yaml:"scopes"`
}

// Role is a role: its scopes go to whoever holds `assume:<RoleID>`.
type Role struct {
	RoleID string   `yaml:"roleId"`
	Scopes []string `yaml:"scopes"`
}

// Storage says where artifact and object bytes live: in an S3 bucket when
// S3 is set, else in files under DataDir/blobs served by the queue.
type Storage struct {
	S3 *S3 `yaml:"s3"`
}

// S3 names a bucket (see package s3blob).
type S3 struct {
	// Endpoint is an S3-compatible server's URL; empty means AWS.
	Endpoint  string `yaml:"endpoint"`
	Region    string `yaml:"region"`
	Bucket    string `yaml:"bucket"`
	Prefix    string `yaml:"prefix"`
	PathStyle bool   `yaml:"pathStyle"`
	// AccessKeyID and SecretAccessKey are static credentials; leave both
	// empty for the AWS default credential chain.
	AccessKeyID     string `yaml:"accessKeyId"`
	SecretAccessKey string `yaml:"secretAccessKey"`
}

// Pulse configures the queue's Pulse messages; they are published only
// when URL is set.
type Pulse struct {
	// URL is the broker, amqp://user:password@host:port/vhost (or amqps).
	URL string `yaml:"url"`
}

// LoadConfig reads and validates a config file; unknown keys are errors.
// An empty path yields the zero Config.
func LoadConfig(path string) (*Config, error) {
	var c Config
	if path == "" {
		return &c, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("queue config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("queue config %s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("queue config %s: %w", path, err)
	}
	return &c, nil
}

// Validate reports every problem of c at once.
func (c *Config) Validate() error {
	var problems []error
	add := func(format string, args ...any) { problems = append(problems, fmt.Errorf(format, args...)) }
	seen := map[string]bool{}
	for i, cl := range c.Clients {
		if cl.ClientID == "" || cl.AccessToken == "" {
			add("clients[%d]: clientId and accessToken are required", i)
		}
		if cl.ClientID != "" && seen[cl.ClientID] {
			add("clients[%d]: clientId %q is configured twice", i, cl.ClientID)
		}
		seen[cl.ClientID] = true
	}
	if err := localqueue.CheckRoles(c.localRoles()); err != nil {
		problems = append(problems, err)
	}
	if c.ClaimTimeout < 0 {
		add("claimTimeout %s is negative", c.ClaimTimeout)
	}
	if s := c.Storage.S3; s != nil {
		if s.Bucket == "" {
			add("storage.s3.bucket is required")
		}
		if (s.AccessKeyID == "") != (s.SecretAccessKey == "") {
			add("storage.s3: give both accessKeyId and secretAccessKey, or neither")
		}
	}
	if u := c.Pulse.URL; u != "" && !strings.HasPrefix(u, "amqp://") && !strings.HasPrefix(u, "amqps://") {
		add("pulse.url %q is not an amqp:// or amqps:// URL", u)
	}
	return errors.Join(problems...)
}

// localRoles are the roles as the queue takes them.
func (c *Config) localRoles() []localqueue.Role {
	var roles []localqueue.Role
	for _, r := range c.Roles {
		roles = append(roles, localqueue.Role{RoleID: r.RoleID, Scopes: slices.Clone(r.Scopes)})
	}
	return roles
}

// DefaultDataDir is $XDG_STATE_HOME/docker-worker, else
// ~/.local/state/docker-worker.
func DefaultDataDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "docker-worker")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "docker-worker")
	}
	return filepath.Join(os.TempDir(), "docker-worker")
}
