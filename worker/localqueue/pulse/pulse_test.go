package pulse

import (
	"context"
	"encoding/json"
	"go.dockerworker.dev/docker-worker/worker/pulse/pulsetest"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"go.dockerworker.dev/docker-worker/worker/internal/apischema"
	"go.dockerworker.dev/docker-worker/worker/localqueue"
	"go.dockerworker.dev/docker-worker/worker/slugid"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

// schemaOf is the body schema of each exchange (exchanges.json).
var schemaOf = map[string]string{
	"task-defined":        "queue/v1/task-defined-message.json",
	"task-pending":        "queue/v1/task-pending-message.json",
	"task-running":        "queue/v1/task-running-message.json",
	"artifact-created":    "queue/v1/artifact-created-message.json",
	"task-completed":      "queue/v1/task-completed-message.json",
	"task-failed":         "queue/v1/task-failed-message.json",
	"task-exception":      "queue/v1/task-exception-message.json",
	"task-group-resolved": "queue/v1/task-group-changed-message.json",
}

// consumer is an exclusive queue bound to the queue's exchanges.
type consumer struct {
	t          *testing.T
	deliveries <-chan amqp.Delivery
}

type binding struct{ exchange, pattern string }

func consume(t *testing.T, brokerURL string, bindings []binding) *consumer {
	t.Helper()
	conn, err := amqp.Dial(brokerURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bindings {
		ex := localqueue.ExchangePrefix + b.exchange
		if err := ch.ExchangeDeclare(ex, "topic", true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
		if err := ch.QueueBind(q.Name, b.pattern, ex, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	d, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &consumer{t: t, deliveries: d}
}

// next waits for the next message.
func (c *consumer) next(timeout time.Duration) (amqp.Delivery, bool) {
	select {
	case d, ok := <-c.deliveries:
		return d, ok
	case <-time.After(timeout):
		return amqp.Delivery{}, false
	}
}

type want struct {
	exchange string
	key      string // routing key
}

// expect reads len(wants) messages and checks each: exchange, routing key,
// properties and a body valid against the exchange's schema; then it checks
// nothing else arrives.
func (c *consumer) expect(schemas *apischema.Set, wants []want) []amqp.Delivery {
	c.t.Helper()
	var got []amqp.Delivery
	for i, w := range wants {
		d, ok := c.next(20 * time.Second)
		if !ok {
			c.t.Fatalf("message %d (%s %s) did not arrive", i, w.exchange, w.key)
		}
		got = append(got, d)
		name := strings.TrimPrefix(d.Exchange, localqueue.ExchangePrefix)
		if name != w.exchange || d.RoutingKey != w.key {
			c.t.Fatalf("message %d = %s %s, want %s %s\nbody %s", i, name, d.RoutingKey, w.exchange, w.key, d.Body)
		}
		if d.ContentType != "application/json" || d.DeliveryMode != amqp.Persistent {
			c.t.Errorf("message %d: content type %q, delivery mode %d", i, d.ContentType, d.DeliveryMode)
		}
		if err := schemas.Validate(schemaOf[name], d.Body); err != nil {
			c.t.Errorf("message %d on %s: %v", i, name, err)
		}
	}
	if d, ok := c.next(500 * time.Millisecond); ok {
		c.t.Fatalf("unexpected extra message %s %s: %s", d.Exchange, d.RoutingKey, d.Body)
	}
	return got
}

type env struct {
	root   string
	admin  *tc.Client
	cancel func()
}

func startQueue(t *testing.T, pub localqueue.Publisher) *env {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	root := "http://" + ln.Addr().String()
	q, err := localqueue.New(localqueue.Config{
		RootURL:        root,
		DataDir:        t.TempDir(),
		Clients:        []localqueue.Client{{ClientID: "admin", AccessToken: "admin-secret", Scopes: []string{"*"}}},
		Publisher:      pub,
		ClaimWait:      time.Second,
		ExpiryInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- localqueue.Serve(ctx, ln, q) }()
	t.Cleanup(func() { cancel(); <-done; q.Close() })
	return &env{root: root, admin: tc.New(tc.Config{RootURL: root, Credentials: &tc.Credentials{ClientID: "admin", AccessToken: "admin-secret"}}), cancel: cancel}
}

func (e *env) create(t *testing.T, taskID, groupID, queueID string, mod func(map[string]any)) {
	t.Helper()
	now := time.Now().UTC()
	def := map[string]any{
		"taskQueueId": queueID,
		"taskGroupId": groupID,
		"schedulerId": "pulse-test",
		"created":     now.Format(time.RFC3339Nano),
		"deadline":    now.Add(time.Hour).Format(time.RFC3339Nano),
		"payload":     map[string]any{},
		"tags":        map[string]string{"purpose": "pulse"},
		"metadata":    map[string]any{"name": "p", "description": "pulse test", "owner": "t@example.com", "source": "https://example.com"},
	}
	if mod != nil {
		mod(def)
	}
	b, _ := json.Marshal(def)
	if _, err := e.admin.CreateTask(t.Context(), taskID, b); err != nil {
		t.Fatal(err)
	}
}

func (e *env) claim(t *testing.T, queueID string) tc.TaskClaim {
	t.Helper()
	resp, err := e.admin.ClaimWork(t.Context(), queueID, tc.ClaimWorkRequest{Tasks: 1, WorkerGroup: "wg", WorkerID: "w1"})
	if err != nil || len(resp.Tasks) != 1 {
		t.Fatalf("claimWork = %+v, %v", resp, err)
	}
	return resp.Tasks[0]
}

func key(taskID, run, worker, queueID, groupID string) string {
	wg, wid := "_", "_"
	if worker != "" {
		wg, wid = "wg", worker
	}
	return strings.Join([]string{"primary", taskID, run, wg, wid, queueID, "pulse-test", groupID, "_"}, ".")
}

// Each exchange gets its messages once, with the real routing key (task
// routes as CC) and a body valid against its schema.
func TestMessagesOnRealExchanges(t *testing.T) {
	brokerURL := pulsetest.Require(t)
	schemas := apischema.Open(t)
	pub, err := New(Config{URL: brokerURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	e := startQueue(t, pub)
	ctx := t.Context()

	group := slugid.Nice()
	queueID := "pulse-prov/t" + strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(slugid.Nice()))[:8]
	route := "dw-test." + strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(group))
	var bindings []binding
	for ex := range schemaOf {
		if ex == "task-group-resolved" {
			bindings = append(bindings, binding{ex, "primary." + group + ".*.#"})
			continue
		}
		// Bound by taskQueue and group: primary.<taskId>.<runId>.<workerGroup>.<workerId>.<provisionerId>.<workerType>.<schedulerId>.<taskGroupId>.#
		prov, wt, _ := strings.Cut(queueID, "/")
		bindings = append(bindings, binding{ex, "primary.*.*.*.*." + prov + "." + wt + ".*." + group + ".#"})
	}
	// The CC'ed route matches too; a message still arrives once.
	bindings = append(bindings, binding{"task-completed", "route." + route})
	c := consume(t, brokerURL, bindings)

	a, b, cID := slugid.Nice(), slugid.Nice(), slugid.Nice()
	qk := strings.Replace(queueID, "/", ".", 1)
	e.create(t, a, group, queueID, func(d map[string]any) { d["routes"] = []string{route} })
	e.create(t, b, group, queueID, func(d map[string]any) { d["dependencies"] = []string{a} })
	e.create(t, cID, group, queueID, nil)
	if _, err := e.admin.CancelTask(ctx, cID); err != nil {
		t.Fatal(err)
	}
	// a is older than c and b is not pending yet: the claim gets a.
	claimA := e.claim(t, queueID)
	if claimA.Status.TaskID != a {
		t.Fatalf("claimed %s, want %s", claimA.Status.TaskID, a)
	}
	runA := e.admin.WithCredentials(claimA.Credentials)
	exp := time.Now().Add(time.Hour)
	for name, req := range map[string]tc.ArtifactRequest{
		"public/ref":  tc.ReferenceArtifact(exp, "https://example.com/x", "text/plain"),
		"public/err":  tc.ErrorArtifact(exp, tc.ArtifactFileMissing, "no such file"),
		"public/blob": tc.S3Artifact(exp, "text/plain"), // s3 artifacts are not announced
	} {
		if _, err := runA.CreateArtifact(ctx, a, 0, name, req); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := runA.ReportCompleted(ctx, a, 0); err != nil {
		t.Fatal(err)
	}
	claimB := e.claim(t, queueID)
	if _, err := e.admin.WithCredentials(claimB.Credentials).ReportFailed(ctx, b, 0); err != nil {
		t.Fatal(err)
	}

	got := c.expect(schemas, []want{
		{"task-defined", key(a, "_", "", qk, group)},
		{"task-pending", key(a, "0", "", qk, group)},
		{"task-defined", key(b, "_", "", qk, group)},
		{"task-defined", key(cID, "_", "", qk, group)},
		{"task-pending", key(cID, "0", "", qk, group)},
		{"task-exception", key(cID, "0", "", qk, group)},
		{"task-running", key(a, "0", "w1", qk, group)},
		{"artifact-created", key(a, "0", "w1", qk, group)},
		{"artifact-created", key(a, "0", "w1", qk, group)},
		{"task-completed", key(a, "0", "w1", qk, group)},
		{"task-pending", key(b, "0", "", qk, group)},
		{"task-running", key(b, "0", "w1", qk, group)},
		{"task-failed", key(b, "0", "w1", qk, group)},
		{"task-group-resolved", "primary." + group + ".pulse-test._"},
	})
	// The completed message carries the task's route as CC.
	cc, _ := got[9].Headers["CC"].([]any)
	if len(cc) != 1 || cc[0] != "route."+route {
		t.Errorf("CC header of task-completed = %v, want [route.%s]", got[9].Headers["CC"], route)
	}
	var completed struct {
		Status struct {
			State string `json:"state"`
		} `json:"status"`
		Task struct {
			Tags map[string]string `json:"tags"`
		} `json:"task"`
	}
	if err := json.Unmarshal(got[9].Body, &completed); err != nil || completed.Status.State != "completed" || completed.Task.Tags["purpose"] != "pulse" {
		t.Errorf("task-completed body %s", got[9].Body)
	}
	var names []string
	for _, d := range got[7:9] {
		var m struct {
			Artifact struct{ Name string } `json:"artifact"`
		}
		json.Unmarshal(d.Body, &m)
		names = append(names, m.Artifact.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"public/err", "public/ref"}) {
		t.Errorf("artifact-created for %v, want public/err and public/ref", names)
	}
}

// proxy forwards loopback TCP connections to the broker and can cut them,
// to stage a broker outage.
type proxy struct {
	t      *testing.T
	addr   string
	target string

	mu    sync.Mutex
	ln    net.Listener
	conns []net.Conn
	wg    sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	p := &proxy{t: t, target: target}
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *proxy) start() {
	p.t.Helper()
	addr := p.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			p.wg.Go(func() { io.Copy(up, c); up.Close() })
			p.wg.Go(func() { io.Copy(c, up); c.Close() })
		}
	})
}

// stop closes the listener and every forwarded connection.
func (p *proxy) stop() {
	p.mu.Lock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}

// A broker outage never blocks or fails an API call; the messages wait
// and arrive once the broker is back.
func TestBrokerOutage(t *testing.T) {
	brokerURL := pulsetest.Require(t)
	schemas := apischema.Open(t)
	bu, _ := url.Parse(brokerURL)
	px := newProxy(t, bu.Host)
	viaProxy := *bu
	viaProxy.Host = px.addr
	pub, err := New(Config{URL: viaProxy.String(), DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	e := startQueue(t, pub)
	ctx := t.Context()

	group := slugid.Nice()
	queueID := "pulse-prov/outage"
	qk := "pulse-prov.outage"
	c := consume(t, brokerURL, []binding{
		{"task-defined", "primary.*.*.*.*.*.*.*." + group + ".#"},
		{"task-pending", "primary.*.*.*.*.*.*.*." + group + ".#"},
		{"task-exception", "primary.*.*.*.*.*.*.*." + group + ".#"},
	})
	first := slugid.Nice()
	e.create(t, first, group, queueID, nil)
	c.expect(schemas, []want{
		{"task-defined", key(first, "_", "", qk, group)},
		{"task-pending", key(first, "0", "", qk, group)},
	})

	px.stop()
	second := slugid.Nice()
	start := time.Now()
	e.create(t, second, group, queueID, nil)
	if _, err := e.admin.CancelTask(ctx, second); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.CancelTask(ctx, first); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("API calls during the outage took %s", d)
	}
	if d, ok := c.next(time.Second); ok {
		t.Fatalf("message arrived while the broker was cut off: %s %s", d.Exchange, d.RoutingKey)
	}
	px.start()
	c.expect(schemas, []want{
		{"task-defined", key(second, "_", "", qk, group)},
		{"task-pending", key(second, "0", "", qk, group)},
		{"task-exception", key(second, "0", "", qk, group)},
		{"task-exception", key(first, "0", "", qk, group)},
	})
}

func TestNewRejectsBadURL(t *testing.T) {
	if _, err := New(Config{URL: "http://example.com"}); err == nil {
		t.Error("New accepted a non-AMQP URL")
	}
}

func TestPublishToDeadBrokerFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p, err := New(Config{URL: "amqp://guest:secret-password@" + addr + "/", DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = p.Publish(t.Context(), []localqueue.Message{{Exchange: localqueue.ExchangePrefix + "task-defined", RoutingKey: "x", Body: []byte("{}")}})
	if err == nil {
		t.Fatal("Publish to a closed port succeeded")
	}
	if strings.Contains(err.Error(), "secret-password") {
		t.Errorf("error leaks the password: %v", err)
	}
}
