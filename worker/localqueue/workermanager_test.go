package localqueue

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/tc"
)

// wmRegistration is the part of registerWorker's answer the tests use.
type wmRegistration struct {
	Credentials  tc.Credentials  `json:"credentials"`
	Expires      string          `json:"expires"`
	Secret       string          `json:"secret"`
	WorkerConfig json.RawMessage `json:"workerConfig"`
}

const wmTestSecret = "c3RhdGljLXNlY3JldC1mb3ItdGhlLXRlc3Qtd29ya2Vy" // 44 characters

func wmPoolBody(providerID string) map[string]any {
	return map[string]any{
		"providerId": providerID, "description": "test pool", "owner": "ops@example.com", "emailOnError": false,
		"config": map[string]any{"workerConfig": map[string]any{"capacity": 2, "dockerConfig": map[string]any{"allowPrivileged": true}}},
	}
}

// TestWorkerManagerStatic drives the static provider's life: pool,
// worker, registration, renewal, termination and removal, every exchange
// checked against the published schemas.
func TestWorkerManagerStatic(t *testing.T) {
	c := newConfEnv(t, func(cfg *Config) { cfg.WorkerManager.CredentialLifetime = time.Hour })
	ctx := t.Context()
	const pool, group, id = "proj-static/workers", "dc1", "host-1"
	poolPath := "/worker-pool/" + tc.PathEscape(pool)
	workerPath := "/workers/" + tc.PathEscape(pool) + "/" + group + "/" + id
	wm := func(cl *tc.Client, method, path string, in, out any) error {
		return cl.Request(ctx, serviceWorkerManager, method, path, nil, in, out)
	}
	anonymous := tc.New(tc.Config{RootURL: c.root, HTTPClient: &http.Client{Transport: c.rec}, Retries: -1})

	if err := wm(c.admin, "GET", "/ping", nil, nil); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "workerPool of an unknown pool", wm(c.admin, "GET", poolPath, nil, nil), codeResourceNotFound)
	wantCode(t, "createWorkerPool without scopes", wm(c.nobody, "PUT", poolPath, wmPoolBody("static"), nil), codeInsufficientScopes)
	wantCode(t, "createWorkerPool of an unknown provider", wm(c.admin, "PUT", poolPath, wmPoolBody("gcp"), nil), codeInputError)
	var created map[string]any
	if err := wm(c.admin, "PUT", poolPath, wmPoolBody("static"), &created); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "createWorkerPool again", wm(c.admin, "PUT", poolPath, wmPoolBody("static"), nil), codeRequestConflict)
	var got map[string]any
	if err := wm(c.admin, "GET", poolPath, nil, &got); err != nil {
		t.Fatal(err)
	}
	if got["workerPoolId"] != pool || got["providerId"] != "static" {
		t.Fatalf("workerPool = %v", got)
	}

	register := func(secret string) (*wmRegistration, error) {
		var out wmRegistration
		err := wm(anonymous, "POST", "/worker/register", map[string]any{
			"workerPoolId": pool, "providerId": "static", "workerGroup": group, "workerId": id,
			"workerIdentityProof": map[string]string{"staticSecret": secret},
		}, &out)
		return &out, err
	}
	_, err := register(wmTestSecret)
	wantCode(t, "registerWorker before createWorker", err, codeResourceNotFound)
	exp := formatTime(c.now().Add(24 * time.Hour))
	if err := wm(c.admin, "PUT", workerPath, map[string]any{"expires": exp, "providerInfo": map[string]string{"staticSecret": wmTestSecret}}, nil); err != nil {
		t.Fatal(err)
	}
	_, err = register(strings.Repeat("x", 44))
	wantCode(t, "registerWorker with a wrong secret", err, codeInputError)
	reg, err := register(wmTestSecret)
	if err != nil {
		t.Fatal(err)
	}
	var wc map[string]any
	if err := json.Unmarshal(reg.WorkerConfig, &wc); err != nil || wc["capacity"] != float64(2) {
		t.Fatalf("workerConfig = %s (%v), want the pool's", reg.WorkerConfig, err)
	}
	if !strings.HasPrefix(reg.Credentials.ClientID, "worker/static/"+pool+"/") || reg.Credentials.Certificate == "" {
		t.Fatalf("credentials = %+v, want temporary credentials named after the worker", reg.Credentials)
	}
	expires, err := parseTime(reg.Expires)
	if err != nil || expires.Sub(c.now()) > time.Hour || expires.Sub(c.now()) < 50*time.Minute {
		t.Fatalf("expires = %s (%v), want about an hour from now", reg.Expires, err)
	}
	worker := tc.New(tc.Config{RootURL: c.root, Credentials: &reg.Credentials, HTTPClient: &http.Client{Transport: c.rec}, Retries: -1})

	// The credentials claim work from the pool's queue as that worker.
	if _, err := worker.ClaimWork(ctx, pool, tc.ClaimWorkRequest{WorkerGroup: group, WorkerID: id, Tasks: 1}); err != nil {
		t.Fatalf("claimWork with the registered credentials: %v", err)
	}

	var should struct {
		Terminate bool   `json:"terminate"`
		Reason    string `json:"reason"`
	}
	if err := wm(worker, "GET", workerPath+"/should-terminate", nil, &should); err != nil || should.Terminate {
		t.Fatalf("shouldWorkerTerminate = %+v, %v; want false", should, err)
	}
	wantCode(t, "shouldWorkerTerminate without scopes", wm(c.nobody, "GET", workerPath+"/should-terminate", nil, nil), codeInsufficientScopes)

	// reregisterWorker: its scope, then the secret, which changes each time.
	rereg := func(cl *tc.Client, secret string) (*wmRegistration, error) {
		var out wmRegistration
		err := wm(cl, "POST", "/worker/reregister", map[string]string{"workerPoolId": pool, "workerGroup": group, "workerId": id, "secret": secret}, &out)
		return &out, err
	}
	_, err = rereg(c.nobody, reg.Secret)
	wantCode(t, "reregisterWorker without scopes", err, codeInsufficientScopes)
	re, err := rereg(worker, reg.Secret)
	if err != nil {
		t.Fatal(err)
	}
	if re.Secret == reg.Secret || re.Credentials.AccessToken == reg.Credentials.AccessToken {
		t.Fatalf("reregisterWorker handed out the same secret or credentials")
	}
	_, err = rereg(worker, reg.Secret)
	wantCode(t, "reregisterWorker with a used secret", err, codeInputError)
	renewed := worker.WithCredentials(re.Credentials)
	if err := wm(renewed, "GET", workerPath+"/should-terminate", nil, &should); err != nil || should.Terminate {
		t.Fatalf("shouldWorkerTerminate with renewed credentials = %+v, %v", should, err)
	}

	if !c.q.RequestTermination(pool, group, id, "launch config archived") {
		t.Fatal("RequestTermination: unknown worker")
	}
	if err := wm(renewed, "GET", workerPath+"/should-terminate", nil, &should); err != nil || !should.Terminate || should.Reason != "launch config archived" {
		t.Fatalf("shouldWorkerTerminate = %+v, %v; want true with the reason", should, err)
	}

	wantCode(t, "removeWorker without scopes", wm(c.nobody, "DELETE", workerPath, nil, nil), codeInsufficientScopes)
	if err := wm(renewed, "DELETE", workerPath, nil, nil); err != nil {
		t.Fatal(err)
	}
	if st := c.q.Worker(pool, group, id); !st.Removed || st.State != workerStopped {
		t.Fatalf("worker state after removeWorker = %+v", st)
	}
	_, err = register(wmTestSecret)
	wantCode(t, "registerWorker after removeWorker", err, codeInputError)
	if err := wm(c.admin, "GET", poolPath, nil, &got); err != nil || got["stoppedCount"] != float64(1) {
		t.Fatalf("workerPool after removeWorker = %v, %v; want one stopped worker", got, err)
	}
	for _, name := range []string{"createWorkerPool", "workerPool", "createWorker", "registerWorker", "reregisterWorker", "shouldWorkerTerminate", "removeWorker"} {
		if c.rec.count(serviceWorkerManager, name) == 0 {
			t.Errorf("%s was not exercised", name)
		}
	}
}

// TestWorkerManagerAWS registers an instance by its identity document,
// signed with the key the service is configured to trust.
func TestWorkerManagerAWS(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	c := newConfEnv(t, func(cfg *Config) { cfg.WorkerManager.AWSIdentityKey = &key.PublicKey })
	ctx := t.Context()
	const pool = "proj-aws/ci"
	anonymous := tc.New(tc.Config{RootURL: c.root, HTTPClient: &http.Client{Transport: c.rec}, Retries: -1})
	// An aws pool's workerConfig is its launch configuration's, per region.
	body := wmPoolBody("aws")
	body["config"] = map[string]any{
		"minCapacity": 0, "maxCapacity": 1,
		"lifecycle": map[string]any{"reregistrationTimeout": 600},
		"launchConfigs": []any{
			map[string]any{"region": "eu-west-1", "launchConfig": map[string]any{}, "workerConfig": map[string]any{"capacity": 9}},
			map[string]any{"region": "us-east-1", "launchConfig": map[string]any{}, "workerConfig": map[string]any{"capacity": 5}},
		},
	}
	if err := c.admin.Request(ctx, serviceWorkerManager, "PUT", "/worker-pool/"+tc.PathEscape(pool), nil, body, nil); err != nil {
		t.Fatal(err)
	}
	sign := func(k *rsa.PrivateKey, doc string) string {
		sum := sha256.Sum256([]byte(doc))
		sig, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, sum[:])
		if err != nil {
			t.Fatal(err)
		}
		return base64.StdEncoding.EncodeToString(sig)
	}
	doc := `{"instanceId":"i-0123456789abcdef0","region":"us-east-1","availabilityZone":"us-east-1a","instanceType":"m5.large"}`
	var last wmRegistration
	register := func(group, id, document, signature string) error {
		return anonymous.Request(ctx, serviceWorkerManager, "POST", "/worker/register", nil, map[string]any{
			"workerPoolId": pool, "providerId": "aws", "workerGroup": group, "workerId": id,
			"workerIdentityProof": map[string]string{"document": document, "signature": signature},
		}, &last)
	}
	wantCode(t, "registerWorker signed with another key", register("us-east-1", "i-0123456789abcdef0", doc, sign(other, doc)), codeInputError)
	wantCode(t, "registerWorker as another instance", register("us-east-1", "i-other", doc, sign(key, doc)), codeInputError)
	wantCode(t, "registerWorker in another region", register("eu-west-1", "i-0123456789abcdef0", doc, sign(key, doc)), codeInputError)
	if err := register("us-east-1", "i-0123456789abcdef0", doc, sign(key, doc)); err != nil {
		t.Fatal(err)
	}
	if string(last.WorkerConfig) != `{"capacity":5}` {
		t.Errorf("workerConfig = %s, want the us-east-1 launch configuration's", last.WorkerConfig)
	}
	if exp, err := parseTime(last.Expires); err != nil || exp.Sub(c.now()) > 10*time.Minute || exp.Sub(c.now()) < 9*time.Minute {
		t.Errorf("expires = %s (%v), want the pool's reregistrationTimeout (10 minutes) from now", last.Expires, err)
	}
	if st := c.q.Worker(pool, "us-east-1", "i-0123456789abcdef0"); st.State != workerRunning {
		t.Fatalf("worker state = %+v, want running", st)
	}
	wantCode(t, "registerWorker twice", register("us-east-1", "i-0123456789abcdef0", doc, sign(key, doc)), codeInputError)
}

// TestWorkerManagerAWSUntrusted: without a trusted key the aws provider
// does not exist, and a configured aws provider refuses registrations.
func TestWorkerManagerAWSUntrusted(t *testing.T) {
	c := newConfEnv(t, func(cfg *Config) {
		cfg.WorkerManager.Providers = map[string]string{"aws": "aws"}
	})
	ctx := t.Context()
	const pool = "proj-aws/ci"
	if err := c.admin.Request(ctx, serviceWorkerManager, "PUT", "/worker-pool/"+tc.PathEscape(pool), nil, wmPoolBody("aws"), nil); err != nil {
		t.Fatal(err)
	}
	err := c.admin.Request(ctx, serviceWorkerManager, "POST", "/worker/register", nil, map[string]any{
		"workerPoolId": pool, "providerId": "aws", "workerGroup": "us-east-1", "workerId": "i-1",
		"workerIdentityProof": map[string]string{"document": `{"instanceId":"i-1","region":"us-east-1"}`, "signature": "AAAA"},
	}, nil)
	wantCode(t, "registerWorker without a trusted key", err, codeInputError)
}
