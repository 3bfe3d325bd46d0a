package workermanager_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.dockerworker.dev/docker-worker/worker/localqueue"
	"go.dockerworker.dev/docker-worker/worker/shutdown"
	"go.dockerworker.dev/docker-worker/worker/spot/spottest"
	"go.dockerworker.dev/docker-worker/worker/tc"
	"go.dockerworker.dev/docker-worker/worker/workermanager"
)

const (
	adminID, adminToken = "admin", "admin-secret"
	staticSecret        = "c3RhdGljLXNlY3JldC1mb3ItdGhlLXRlc3Qtd29ya2Vy"
)

type wmEnv struct {
	root  string
	q     *localqueue.Queue
	admin *tc.Client
}

// startQueue serves an embedded queue (and its worker-manager subset) on
// 127.0.0.1 until the test ends.
func startQueue(t *testing.T, wm localqueue.WorkerManagerConfig) *wmEnv {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	root := "http://" + ln.Addr().String()
	q, err := localqueue.New(localqueue.Config{
		RootURL:       root,
		DataDir:       t.TempDir(),
		Clients:       []localqueue.Client{{ClientID: adminID, AccessToken: adminToken, Scopes: []string{"*"}}},
		ClaimWait:     100 * time.Millisecond,
		WorkerManager: wm,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- localqueue.Serve(ctx, ln, q) }()
	t.Cleanup(func() { cancel(); <-done })
	return &wmEnv{root: root, q: q, admin: tc.New(tc.Config{RootURL: root, Credentials: &tc.Credentials{ClientID: adminID, AccessToken: adminToken}})}
}

func (e *wmEnv) createPool(t *testing.T, pool, provider string, workerConfig map[string]any) {
	t.Helper()
	err := e.admin.Request(t.Context(), "worker-manager", "PUT", "/worker-pool/"+tc.PathEscape(pool), nil, map[string]any{
		"providerId": provider, "description": "", "owner": "ops@example.com", "emailOnError": false,
		"config": map[string]any{"workerConfig": workerConfig},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
}

func (e *wmEnv) createStatic(t *testing.T, pool, group, id string) {
	t.Helper()
	err := e.admin.Request(t.Context(), "worker-manager", "PUT", "/workers/"+tc.PathEscape(pool)+"/"+group+"/"+id, nil, map[string]any{
		"expires": time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "providerInfo": map[string]string{"staticSecret": staticSecret},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
}

// creds holds the current credentials as the wiring's WorkerCredentials
// would.
type creds struct {
	mu   sync.Mutex
	c    *tc.Client
	sets int
}

func (c *creds) client() *tc.Client { c.mu.Lock(); defer c.mu.Unlock(); return c.c }
func (c *creds) set(n tc.Credentials) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.c = c.c.WithCredentials(n)
	c.sets++
}
func (c *creds) count() int { c.mu.Lock(); defer c.mu.Unlock(); return c.sets }

func TestStaticSession(t *testing.T) {
	e := startQueue(t, localqueue.WorkerManagerConfig{CredentialLifetime: 3 * time.Second})
	const pool, group, id = "proj/static-pool", "dc1", "host-1"
	e.createPool(t, pool, "static", map[string]any{"capacity": 3})
	e.createStatic(t, pool, group, id)
	ident := workermanager.Static("static", pool, group, id, staticSecret)
	ctx := t.Context()

	if _, err := workermanager.Register(ctx, tc.New(tc.Config{RootURL: e.root}), workermanager.Static("static", pool, group, id, strings.Repeat("A", 44)), time.Time{}); tc.StatusCode(err) != 400 {
		t.Fatalf("Register with a wrong secret = %v, want a 400", err)
	}
	reg, err := workermanager.Register(ctx, tc.New(tc.Config{RootURL: e.root}), ident, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if string(reg.WorkerConfig) != `{"capacity":3}` {
		t.Fatalf("workerConfig = %s", reg.WorkerConfig)
	}
	cur := &creds{c: tc.New(tc.Config{RootURL: e.root, Credentials: &reg.Credentials})}
	s := workermanager.NewSession(workermanager.SessionConfig{
		Identity: ident, First: reg, Client: cur.client, SetCredentials: cur.set, CheckInterval: time.Hour,
	})

	// Renewal: new credentials before the old ones expire, twice, each
	// accepted by the service.
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); s.RunRenewal(rctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for cur.count() < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	<-done
	if cur.count() < 2 {
		t.Fatalf("renewed %d times in 30s, want 2", cur.count())
	}
	if cur.client().RootURL() != e.root {
		t.Fatal("root URL lost")
	}
	if _, err := cur.client().ClaimWork(ctx, pool, tc.ClaimWorkRequest{WorkerGroup: group, WorkerID: id, Tasks: 1}); err != nil {
		t.Fatalf("renewed credentials are refused: %v", err)
	}

	// shouldWorkerTerminate: asked at most once per interval.
	if term, _ := s.ShouldTerminate(ctx); term {
		t.Fatal("ShouldTerminate = true for a running worker")
	}
	e.q.RequestTermination(pool, group, id, "pool retired")
	if term, _ := s.ShouldTerminate(ctx); term {
		t.Fatal("ShouldTerminate asked again within its interval")
	}
	s2 := workermanager.NewSession(workermanager.SessionConfig{Identity: ident, First: reg, Client: cur.client, SetCredentials: cur.set})
	if term, reason := s2.ShouldTerminate(ctx); !term || reason != "pool retired" {
		t.Fatalf("ShouldTerminate = %v %q, want true, pool retired", term, reason)
	}

	// RemoveAction: removeWorker, then the next action.
	var then []shutdown.Reason
	act := workermanager.RemoveAction{Session: s, Then: actionFunc(func(_ context.Context, why shutdown.Reason) error {
		then = append(then, why)
		return nil
	})}
	if err := act.Shutdown(ctx, shutdown.Idle); err != nil {
		t.Fatal(err)
	}
	if st := e.q.Worker(pool, group, id); !st.Removed {
		t.Fatalf("worker not removed: %+v", st)
	}
	if len(then) != 1 || then[0] != shutdown.Idle {
		t.Fatalf("next action ran with %v", then)
	}
	// A second removal fails (the worker is gone): the next action still
	// runs, and its error is the action's.
	boom := errors.New("boom")
	act.Then = actionFunc(func(context.Context, shutdown.Reason) error { return boom })
	if err := act.Shutdown(ctx, shutdown.Idle); !errors.Is(err, boom) {
		t.Fatalf("Shutdown = %v, want the next action's error", err)
	}
}

type actionFunc func(context.Context, shutdown.Reason) error

func (f actionFunc) Shutdown(ctx context.Context, why shutdown.Reason) error { return f(ctx, why) }

func TestAWSIdentity(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	e := startQueue(t, localqueue.WorkerManagerConfig{AWSIdentityKey: &key.PublicKey})
	const pool = "proj/aws-pool"
	e.createPool(t, pool, "aws", map[string]any{"capacity": 2})
	md := spottest.Start(t)

	if _, err := workermanager.AWS(t.Context(), md.URL); err == nil {
		t.Fatal("AWS without an identity document succeeded")
	}
	doc := `{"instanceId":"i-0abc","region":"us-west-2","availabilityZone":"us-west-2b","instanceType":"c5.xlarge","privateIp":"10.0.0.5"}`
	if err := md.SetIdentity(doc, key); err != nil {
		t.Fatal(err)
	}
	md.SetUserData(`{"workerPoolId":"` + pool + `","providerId":"aws","workerGroup":"us-west-2","rootUrl":"` + e.root + `","workerConfig":{}}`)
	md.Set("local-ipv4", "10.0.0.5")
	md.Set("public-ipv4", "203.0.113.7")
	md.Set("public-hostname", "ec2-203-0-113-7.compute.example")
	inst, err := workermanager.AWS(t.Context(), md.URL)
	if err != nil {
		t.Fatal(err)
	}
	id := inst.Identity
	if id.WorkerID != "i-0abc" || id.WorkerGroup != "us-west-2" || id.WorkerPoolID != pool || id.ProviderID != "aws" || inst.UserData.RootURL != e.root {
		t.Fatalf("identity = %+v, user-data %+v", id, inst.UserData)
	}
	f := inst.Facts
	if f.InstanceID != "i-0abc" || f.InstanceType != "c5.xlarge" || f.Region != "us-west-2" || f.PrivateIP != "10.0.0.5" ||
		f.PublicIP != "203.0.113.7" || f.Host != "ec2-203-0-113-7.compute.example" ||
		f.WorkerLocation["cloud"] != "aws" || f.WorkerLocation["availabilityZone"] != "us-west-2b" {
		t.Fatalf("facts = %+v", f)
	}
	if md.Refused() != 0 {
		t.Fatalf("%d reads without an IMDSv2 token", md.Refused())
	}
	reg, err := workermanager.Register(t.Context(), tc.New(tc.Config{RootURL: e.root}), id, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if string(reg.WorkerConfig) != `{"capacity":2}` {
		t.Fatalf("workerConfig = %s", reg.WorkerConfig)
	}

	// A document signed with another key is refused by the service.
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	doc2 := strings.Replace(doc, "i-0abc", "i-0def", 1)
	md.SetIdentity(doc2, other)
	inst2, err := workermanager.AWS(t.Context(), md.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := workermanager.Register(t.Context(), tc.New(tc.Config{RootURL: e.root}), inst2.Identity, time.Time{}); tc.StatusCode(err) != 400 {
		t.Fatalf("Register with a forged signature = %v, want a 400", err)
	}
}
