package config

import (
	"strings"
	"testing"
)

const testStaticSecret = "c3RhdGljLXNlY3JldC1mb3ItdGhlLXRlc3Qtd29ya2Vy"

func TestReadProvider(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		wantErr    []string
	}{
		{name: "no provider", yaml: "capacity: 2\n"},
		{name: "static", yaml: "rootUrl: http://127.0.0.1:1\nprovider:\n  providerType: static\n  workerPoolID: proj/pool\n" +
			"  workerGroup: dc1\n  workerID: host-1\n  staticSecret: " + testStaticSecret + "\n"},
		{name: "static with worker-runner's rootURL", yaml: "provider:\n  providerType: static\n  rootURL: http://127.0.0.1:1\n  workerPoolID: proj/pool\n" +
			"  workerGroup: dc1\n  workerID: host-1\n  staticSecret: " + testStaticSecret + "\n"},
		{name: "aws needs nothing else", yaml: "provider: {providerType: aws}\n"},
		{name: "other keys' problems are left to LoadWith", yaml: "provider: {providerType: aws}\nbogus: 1\ncapacity: 0\n"},
		{name: "static lacks its keys", yaml: "provider: {providerType: static, workerPoolID: nope, staticSecret: short}\n", wantErr: []string{
			`provider.workerPoolID: "nope" is not a worker pool ID`,
			`provider.workerGroup: "" must be`,
			`provider.workerID: "" must be`,
			"provider.staticSecret: must be 44 characters",
			"rootUrl: is required with provider.providerType static",
		}},
		{name: "bad rootURL", yaml: "provider: {providerType: static, rootURL: nowhere}\n", wantErr: []string{
			`provider.rootURL: "nowhere" is not an http(s) URL`,
		}},
		{name: "unknown type", yaml: "provider: {providerType: gcp}\n", wantErr: []string{`provider.providerType: "gcp" is not a provider type (static, aws)`}},
		{name: "bad endpoint", yaml: "provider: {providerType: aws, metadataEndpoint: 169.254.169.254}\n", wantErr: []string{`provider.metadataEndpoint: "169.254.169.254" is not an http(s) URL`}},
		{name: "unknown key", yaml: "provider: {providerType: aws, workerPoolId: x}\n", wantErr: []string{"provider.workerPoolId: unknown key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadProvider(write(t, tc.yaml), LoadOptions{Getenv: env(nil)})
			if tc.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q:\n%v", want, err)
				}
			}
		})
	}
}

// TestRegisteredOverlay: the pool's workerConfig lies over the file, the
// registration's values over both, and the result is validated.
func TestRegisteredOverlay(t *testing.T) {
	path := write(t, "provider: {providerType: aws}\ncapacity: 1\nlogging: {liveLogPort: 60099}\ndockerConfig: {allowPrivileged: false}\n")
	apply := func(c *Config) {
		c.RootURL = "http://127.0.0.1:2"
		c.Taskcluster = Credentials{ClientID: "worker/aws/p/w/i-1", AccessToken: "tok"}
		c.ProvisionerID, c.WorkerType, c.WorkerGroup, c.WorkerID = "proj", "pool", "us-east-1", "i-1"
	}
	c, err := LoadWith(path, LoadOptions{Getenv: env(nil), Registered: &Registered{
		WorkerConfig: []byte(`{"capacity": 4, "dockerConfig": {"allowPrivileged": true}, "workerId": "from-the-pool", "createQueue": true}`),
		From:         "workerConfig of worker pool proj/pool",
		Apply:        apply,
	}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Capacity != 4 || !c.DockerConfig.AllowPrivileged || c.Logging.LiveLogPort != 60099 {
		t.Errorf("capacity %d, allowPrivileged %v, liveLogPort %d: want the pool's over the file's, the file's elsewhere",
			c.Capacity, c.DockerConfig.AllowPrivileged, c.Logging.LiveLogPort)
	}
	if c.WorkerID != "i-1" || c.Taskcluster.ClientID != "worker/aws/p/w/i-1" {
		t.Errorf("workerId %q, clientId %q: want the registration's", c.WorkerID, c.Taskcluster.ClientID)
	}
	if ig := c.Ignored(); len(ig) != 1 || ig[0] != "createQueue" {
		t.Errorf("ignored = %v, want the pool's createQueue", ig)
	}

	_, err = LoadWith(path, LoadOptions{Getenv: env(nil), Registered: &Registered{
		WorkerConfig: []byte(`{"capacity": "many"}`), From: "workerConfig of worker pool proj/pool", Apply: apply,
	}})
	if err == nil || !strings.Contains(err.Error(), "workerConfig of worker pool proj/pool") || !strings.Contains(err.Error(), "capacity") {
		t.Fatalf("a bad workerConfig = %v, want a problem naming it", err)
	}
}
