package e2e

// Port of docker-worker's registry_auth_test against the loopback registry
// with basic authentication that test/setup-env.sh starts.

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/authconfig"
	"github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/client"

	"go.dockerworker.dev/docker-worker/worker/config"
	"go.dockerworker.dev/docker-worker/worker/docker/dockertest"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// privateE2EImage is the test image in the private registry under a name
// only these tests pull and remove.
const privateE2EImage = dockertest.PrivateRegistry + "/docker-worker-test/private-busybox-e2e:latest"

var pushPrivate sync.Once

// pushPrivateImage pushes the test image to the private registry as
// privateE2EImage (once per test binary).
func pushPrivateImage(t *testing.T) {
	t.Helper()
	dockertest.Require(t)
	var err error
	pushPrivate.Do(func() {
		ctx := context.Background()
		var api *client.Client
		if api, err = client.New(client.FromEnv); err != nil {
			return
		}
		defer api.Close()
		if _, err = api.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
			return
		}
		if _, err = api.ImageTag(ctx, client.ImageTagOptions{Source: image, Target: privateE2EImage}); err != nil {
			return
		}
		var auth string
		auth, err = authconfig.Encode(registry.AuthConfig{Username: dockertest.PrivateUser, Password: dockertest.PrivatePassword, ServerAddress: dockertest.PrivateRegistry})
		if err != nil {
			return
		}
		var res client.ImagePushResponse
		if res, err = api.ImagePush(ctx, privateE2EImage, client.ImagePushOptions{RegistryAuth: auth}); err != nil {
			return
		}
		defer res.Close()
		for m, merr := range res.JSONMessages(ctx) {
			if merr != nil {
				err = merr
				return
			}
			if m.Error != nil {
				err = m.Error
				return
			}
		}
	})
	if err != nil {
		t.Fatalf("push %s: %v", privateE2EImage, err)
	}
}

// registry_auth_test: success with the image's scope, success with a star
// scope, failure with wrong credentials, failure without the scope.
func TestRegistryAuth(t *testing.T) {
	pushPrivateImage(t)
	dc := dockertest.Require(t)
	for _, tt := range []struct {
		name      string
		password  string
		scopes    []string
		wantState string
		wantLog   []string
	}{
		{name: "success", password: dockertest.PrivatePassword, scopes: []string{"docker-worker:image:" + privateE2EImage},
			wantState: tc.StateCompleted, wantLog: []string{privateE2EImage, "hello from the private image"}},
		{name: "success with star", password: dockertest.PrivatePassword, scopes: []string{"docker-worker:image:" + dockertest.PrivateRegistry + "/*"},
			wantState: tc.StateCompleted, wantLog: []string{privateE2EImage, "hello from the private image"}},
		{name: "failed auth", password: "not-the-password", scopes: []string{"docker-worker:image:" + dockertest.PrivateRegistry + "/*"},
			wantState: tc.StateFailed, wantLog: []string{"[taskcluster:error] Pulling docker image has failed.", "unauthorized"}},
		{name: "failed scopes", password: dockertest.PrivatePassword, scopes: []string{"docker-worker:image:" + dockertest.PrivateRegistry + "/other:latest"},
			wantState: tc.StateFailed, wantLog: []string{`Not authorized to use "` + privateE2EImage + `".  Ensure that the task scopes are correctly defined in the task definition`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := dc.RemoveImage(t.Context(), privateE2EImage); err != nil {
				t.Fatal(err)
			}
			q := startQueue(t, nil)
			cfg := q.workerConfig("registry-auth-" + strings.ReplaceAll(tt.name, " ", "-"))
			cfg.DockerConfig.MaxAttempts = 1
			cfg.Registries = map[string]config.RegistryCredentials{
				dockertest.PrivateRegistry: {Username: dockertest.PrivateUser, Password: tt.password},
			}
			startWorker(t, q, cfg)
			p := shell("echo hello from the private image", 60)
			p["image"] = privateE2EImage
			def := newTask(cfg, p)
			def["scopes"] = tt.scopes
			task := q.create(t, def)
			wantState(t, q.waitRun(t, task, 0, 2*time.Minute), 0, tt.wantState, "")
			log := q.logOf(t, task, 0, "")
			mustContain(t, log, tt.wantLog...)
			for _, secret := range []string{dockertest.PrivatePassword, tt.password} {
				if strings.Contains(log, secret) {
					t.Errorf("the registry password %q reached the task log", secret)
				}
			}
		})
	}
}
