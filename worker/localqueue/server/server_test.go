package server

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"go.dockerworker.dev/docker-worker/worker/slugid"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

func writeFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "queue.yml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadConfig(t *testing.T) {
	empty := []string{}
	for _, tt := range []struct {
		name    string
		text    string
		want    *Config
		wantErr []string // substrings of the error, all of them
	}{
		{
			name: "every key",
			text: `
listen: 0.0.0.0:9000
rootUrl: http://queue.example:9000
dataDir: /var/lib/q
claimTimeout: 5m
clients:
  - clientId: c1
    accessToken: t1
    scopes: ["queue:create-task:*"]
anonymousScopes: []
roles:
  - roleId: "repo:*"
    scopes: ["queue:route:index.<..>.*"]
storage:
  s3: {endpoint: "http://127.0.0.1:7070", region: eu-west-1, bucket: b, prefix: p/, pathStyle: true, accessKeyId: k, secretAccessKey: s}
pulse:
  url: amqp://guest:guest@127.0.0.1:5672/
`,
			want: &Config{
				Listen: "0.0.0.0:9000", RootURL: "http://queue.example:9000", DataDir: "/var/lib/q", ClaimTimeout: 5 * time.Minute,
				Clients:         []Client{{ClientID: "c1", AccessToken: "t1", Scopes: []string{"queue:create-task:*"}}},
				AnonymousScopes: &empty,
				Roles:           []Role{{RoleID: "repo:*", Scopes: []string{"queue:route:index.<..>.*"}}},
				Storage:         Storage{S3: &S3{Endpoint: "http://127.0.0.1:7070", Region: "eu-west-1", Bucket: "b", Prefix: "p/", PathStyle: true, AccessKeyID: "k", SecretAccessKey: "s"}},
				Pulse:           Pulse{URL: "amqp://guest:guest@127.0.0.1:5672/"},
			},
		},
		{name: "JSON", text: `{"listen": "127.0.0.1:1"}`, want: &Config{Listen: "127.0.0.1:1"}},
		{name: "empty file", text: "", want: &Config{}},
		{name: "unknown key", text: "listen: x\nbucket: y\n", wantErr: []string{"field bucket not found"}},
		{name: "client without token", text: "clients: [{clientId: a}]", wantErr: []string{"clients[0]: clientId and accessToken are required"}},
		{name: "roles in a cycle", text: "roles: [{roleId: a, scopes: [assume:b]}, {roleId: b, scopes: [assume:a]}]", wantErr: []string{"cycles", "'a' -> 'b' -> 'a'"}},
		{name: "role without id", text: "roles: [{scopes: [x]}, {roleId: 'x*', scopes: ['a:<..>:<..>']}]", wantErr: []string{"roles[0]: roleId is required", "more than one <..>"}},
		{
			name: "every problem at once",
			text: "clients: [{clientId: a, accessToken: x}, {clientId: a, accessToken: y}]\nclaimTimeout: -1s\nstorage: {s3: {accessKeyId: k}}\npulse: {url: http://x}\n",
			wantErr: []string{
				`clients[1]: clientId "a" is configured twice`, "claimTimeout -1s is negative", "storage.s3.bucket is required",
				"give both accessKeyId and secretAccessKey", `pulse.url "http://x"`,
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadConfig(writeFile(t, tt.text))
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("LoadConfig succeeded: %+v", got)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
	if c, err := LoadConfig(""); err != nil || !cmp.Equal(c, &Config{}) {
		t.Errorf(`LoadConfig("") = %+v, %v; want the zero Config`, c, err)
	}
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.yml")); err == nil {
		t.Error("LoadConfig of a missing file succeeded")
	}
}

// The example in the README's queue configuration section is valid.
func TestREADMEExampleConfig(t *testing.T) {
	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)`docker-worker queue --config FILE`.*?```yaml\n(.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README has no queue config example after `docker-worker queue --config FILE`")
	}
	c, err := LoadConfig(writeFile(t, string(m[1])))
	if err != nil {
		t.Fatalf("README example: %v", err)
	}
	if len(c.Clients) == 0 || c.Storage.S3 == nil || c.Pulse.URL == "" || c.ClaimTimeout == 0 || len(c.Roles) == 0 {
		t.Errorf("README example leaves out sections: %+v", c)
	}
}

// start starts a queue on a free port and returns it with a function that
// stops it and returns Wait's error.
func start(t *testing.T, cfg Config, opts Options) (*Queue, func() error) {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	q, err := Start(ctx, cfg, opts)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return q.Wait()
	}
	t.Cleanup(func() { _ = stop() })
	return q, stop
}

func createTask(t *testing.T, c *tc.Client) string {
	t.Helper()
	now := time.Now().UTC()
	def, _ := json.Marshal(map[string]any{
		"taskQueueId": "srv-prov/srv-type",
		"created":     now.Format(time.RFC3339), "deadline": now.Add(time.Hour).Format(time.RFC3339),
		"payload":  map[string]any{},
		"metadata": map[string]any{"name": "n", "description": "d", "owner": "o@example.com", "source": "https://example.com"},
	})
	id := slugid.Nice()
	if _, err := c.CreateTask(t.Context(), id, def); err != nil {
		t.Fatal(err)
	}
	return id
}

// Without configured clients the queue generates an admin client in the
// data directory; state and client survive a restart.
func TestStartWithGeneratedAdmin(t *testing.T) {
	dir := t.TempDir()
	q, stop := start(t, Config{DataDir: dir}, Options{ClaimWait: time.Second})
	if q.Admin == nil || q.Admin.ClientID != AdminClientID || q.DataDir != dir || !strings.HasPrefix(q.RootURL, "http://127.0.0.1:") {
		t.Fatalf("started %+v", q)
	}
	admin := *q.Admin
	taskID := createTask(t, tc.New(tc.Config{RootURL: q.RootURL, Credentials: &admin}))
	if err := stop(); err != nil {
		t.Fatalf("Wait = %v, want nil after the context is done", err)
	}

	q, _ = start(t, Config{DataDir: dir}, Options{})
	if q.Admin == nil || !cmp.Equal(*q.Admin, admin) {
		t.Fatalf("admin after restart = %+v, want %+v", q.Admin, admin)
	}
	c := tc.New(tc.Config{RootURL: q.RootURL, Credentials: q.Admin})
	if st, err := c.Status(t.Context(), taskID); err != nil || st.Status.State != tc.StatePending {
		t.Fatalf("task after restart = %+v, %v", st, err)
	}
}

// With configured clients there is no admin client unless asked for; the
// configured clients are used.
func TestStartWithConfiguredClients(t *testing.T) {
	cfg := Config{
		DataDir: t.TempDir(),
		Clients: []Client{{ClientID: "ci", AccessToken: "ci-secret", Scopes: []string{"queue:create-task:*", "queue:scheduler-id:*"}}},
	}
	q, _ := start(t, cfg, Options{})
	if q.Admin != nil {
		t.Errorf("admin client %+v without WithAdmin", q.Admin)
	}
	createTask(t, tc.New(tc.Config{RootURL: q.RootURL, Credentials: &tc.Credentials{ClientID: "ci", AccessToken: "ci-secret"}}))
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "client.json")); !os.IsNotExist(err) {
		t.Errorf("client.json written without an admin client: %v", err)
	}

	q2, _ := start(t, Config{DataDir: t.TempDir(), Clients: cfg.Clients}, Options{WithAdmin: true})
	if q2.Admin == nil {
		t.Fatal("no admin client with WithAdmin")
	}
	createTask(t, tc.New(tc.Config{RootURL: q2.RootURL, Credentials: q2.Admin}))
}

func TestStartRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	_, err := Start(t.Context(), Config{DataDir: dir, Listen: "127.0.0.1:0", Clients: []Client{{ClientID: "x"}}}, Options{})
	if err == nil || !strings.Contains(err.Error(), "clientId and accessToken are required") {
		t.Fatalf("Start = %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a refused config left %d files in the data directory", len(entries))
	}
}

// The config's roles reach the queue: its expandScopes and its scope checks.
func TestStartWithRoles(t *testing.T) {
	cfg := Config{
		DataDir: t.TempDir(),
		Clients: []Client{{ClientID: "ci", AccessToken: "ci-secret", Scopes: []string{"assume:scheduler:srv-prov/srv-type", "auth:expand-scopes"}}},
		Roles: []Role{{RoleID: "scheduler:*", Scopes: []string{
			"queue:create-task:lowest:<..>", "queue:scheduler-id:-", "queue:create-task:project:none",
		}}},
	}
	q, _ := start(t, cfg, Options{})
	c := tc.New(tc.Config{RootURL: q.RootURL, Credentials: &tc.Credentials{ClientID: "ci", AccessToken: "ci-secret"}})
	got, err := c.ExpandScopes(t.Context(), []string{"assume:scheduler:p/w"})
	if diff := cmp.Diff([]string{"assume:scheduler:p/w", "queue:create-task:lowest:p/w", "queue:create-task:project:none", "queue:scheduler-id:-"}, got); err != nil || diff != "" {
		t.Fatalf("ExpandScopes = %v (-want +got):\n%s", err, diff)
	}
	createTask(t, c) // needs the scopes the role grants
}
