package pulse

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	amqp "github.com/rabbitmq/amqp091-go"

	"go.dockerworker.dev/docker-worker/worker/internal/backoff"
	"go.dockerworker.dev/docker-worker/worker/pulse/pulsetest"
)

func TestRoutingKey(t *testing.T) {
	if got, want := RoutingKey("wg", "w-1"), "primary.*.*.wg.w-1.#"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestNew(t *testing.T) {
	on := func(string, int, string) {}
	for _, tc := range []struct {
		name    string
		cfg     Config
		on      ExceptionFunc
		wantErr string
	}{
		{"ok", Config{URL: "amqp://u:p@h/", WorkerGroup: "g", WorkerID: "w"}, on, ""},
		{"scheme", Config{URL: "http://u:hunter2@h/", WorkerGroup: "g", WorkerID: "w"}, on, "broker URL"},
		{"no worker", Config{URL: "amqp://u:p@h/"}, on, "worker group and worker ID"},
		{"no callback", Config{URL: "amqp://u:p@h/", WorkerGroup: "g", WorkerID: "w"}, nil, "no callback"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg, tc.on)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	c, err := New(Config{URL: "amqp://u:p@h/", WorkerGroup: "wg", WorkerID: "w1"}, func(string, int, string) {})
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		TaskID string
		RunID  int
		Reason string
	}
	for _, tc := range []struct {
		name    string
		body    string
		want    result
		wantErr string
	}{
		{"canceled", `{"version":1,"runId":1,"workerGroup":"wg","workerId":"w1","status":{"taskId":"T","runs":[{"reasonResolved":"worker-shutdown"},{"reasonResolved":"canceled"}]}}`,
			result{"T", 1, "canceled"}, ""},
		{"run missing from status", `{"runId":2,"workerGroup":"wg","workerId":"w1","status":{"taskId":"T","runs":[]}}`,
			result{"T", 2, ""}, ""},
		{"no run started", `{"version":1,"status":{"taskId":"T","runs":[]}}`, result{}, "no runId"},
		{"another worker", `{"runId":0,"workerGroup":"wg","workerId":"w2","status":{"taskId":"T","runs":[{}]}}`, result{}, "run of worker wg/w2"},
		{"no task", `{"runId":0,"workerGroup":"wg","workerId":"w1","status":{}}`, result{}, "no status.taskId"},
		{"negative run", `{"runId":-1,"workerGroup":"wg","workerId":"w1","status":{"taskId":"T"}}`, result{}, "runId -1"},
		{"not JSON", `nope`, result{}, "decode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got result
			var err error
			got.TaskID, got.RunID, got.Reason, err = c.decode([]byte(tc.body))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// publisher publishes task-exception messages as the queue does.
func publisher(t *testing.T, brokerURL string) func(key string, body any) {
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
	if err := ch.ExchangeDeclare(Exchange, "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	return func(key string, body any) {
		t.Helper()
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		if err := ch.PublishWithContext(t.Context(), Exchange, key, false, false, amqp.Publishing{ContentType: "application/json", Body: b}); err != nil {
			t.Fatal(err)
		}
	}
}

// exceptionBody is a task-exception message for run runID of taskID held by
// workerGroup/workerID, with its routing key.
func exceptionBody(taskID string, runID int, workerGroup, workerID string) (string, map[string]any) {
	runs := make([]map[string]any, runID+1)
	for i := range runs {
		runs[i] = map[string]any{"runId": i, "state": "exception", "reasonResolved": "worker-shutdown"}
	}
	runs[runID]["reasonResolved"] = "canceled"
	key := strings.Join([]string{"primary", taskID, strconv.Itoa(runID), workerGroup, workerID, "prov", "wt", "sched", taskID, "_"}, ".")
	return key, map[string]any{
		"version": 1, "runId": runID, "workerGroup": workerGroup, "workerId": workerID,
		"status": map[string]any{"taskId": taskID, "runs": runs},
	}
}

type call struct {
	TaskID string
	RunID  int
	Reason string
}

// start runs a consumer for wg/w1 until the test ends and returns its calls.
func start(t *testing.T, brokerURL string) (*Consumer, <-chan call) {
	t.Helper()
	return startWith(t, Config{URL: brokerURL})
}

// startWith is start with more of the config; URL must be set.
func startWith(t *testing.T, cfg Config) (*Consumer, <-chan call) {
	t.Helper()
	calls := make(chan call, 16)
	cfg.WorkerGroup, cfg.WorkerID = "wg", "w1"
	cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.Backoff = backoff.Policy{Base: 50 * time.Millisecond, Max: 200 * time.Millisecond}
	c, err := New(cfg, func(taskID string, runID int, reason string) { calls <- call{taskID, runID, reason} })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("the consumer did not stop with its context")
		}
	})
	return c, calls
}

// waitBindings waits until c has bound n times.
func waitBindings(t *testing.T, c *Consumer, n int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for c.Bindings() < n {
		if time.Now().After(deadline) {
			t.Fatalf("got %d bindings, want %d", c.Bindings(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestConsumerReceivesOnlyItsRuns(t *testing.T) {
	broker := pulsetest.Require(t)
	publish := publisher(t, broker)
	c, calls := start(t, broker)
	waitBindings(t, c, 1)

	publish(exceptionBody("other-task", 0, "wg", "w2"))
	publish(exceptionBody("other-group", 0, "wg2", "w1"))
	publish(exceptionBody("mine", 2, "wg", "w1"))
	select {
	case got := <-calls:
		if diff := cmp.Diff(call{"mine", 2, "canceled"}, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no call for the worker's run")
	}
	select {
	case got := <-calls:
		t.Errorf("unexpected call %+v", got)
	case <-time.After(300 * time.Millisecond):
	}
}

func TestConsumerReconnects(t *testing.T) {
	broker := pulsetest.Require(t)
	publish := publisher(t, broker)
	p := pulsetest.NewProxy(t, broker)
	c, calls := start(t, p.URL)
	waitBindings(t, c, 1)

	p.Cut()
	waitBindings(t, c, 2)
	publish(exceptionBody("after", 0, "wg", "w1"))
	select {
	case got := <-calls:
		if diff := cmp.Diff(call{"after", 0, "canceled"}, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no call after the reconnection")
	}
}

func TestConsumerRetriesUntilBrokerAnswers(t *testing.T) {
	broker := pulsetest.Require(t)
	p := pulsetest.NewProxy(t, broker)
	p.SetRefusing(true)
	c, _ := start(t, p.URL)
	time.Sleep(300 * time.Millisecond)
	if n := c.Bindings(); n != 0 {
		t.Fatalf("got %d bindings through a refusing proxy", n)
	}
	p.SetRefusing(false)
	waitBindings(t, c, 1)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// A broker that accepts connections but never answers must not hold up a
// stop until the dial timeout.
func TestConsumerStopsDuringHandshake(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	c, err := New(Config{URL: "amqp://u:p@" + l.Addr().String() + "/", WorkerGroup: "wg", WorkerID: "w1", DialTimeout: time.Minute},
		func(string, int, string) {})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	var held net.Conn
	select {
	case held = <-accepted:
		defer held.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("the consumer did not connect")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the consumer waited for the handshake to time out before stopping")
	}
}

// A connection that goes silent without closing (no FIN, no RST) is given
// up by the heartbeat and replaced; without heartbeats the consumer would
// wait on it forever.
func TestConsumerHeartbeatNoticesSilentBroker(t *testing.T) {
	broker := pulsetest.Require(t)
	publish := publisher(t, broker)
	p := pulsetest.NewProxy(t, broker)
	c, calls := startWith(t, Config{URL: p.URL, Heartbeat: time.Second})
	waitBindings(t, c, 1)

	p.Stall()
	waitBindings(t, c, 2)
	publish(exceptionBody("after-stall", 0, "wg", "w1"))
	select {
	case got := <-calls:
		if diff := cmp.Diff(call{"after-stall", 0, "canceled"}, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no call after the stalled connection was replaced")
	}
}

// A broker that accepts connections but never completes the handshake
// costs each attempt DialTimeout, after which the consumer dials again.
func TestConsumerRedialsAfterHandshakeTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	startWith(t, Config{URL: "amqp://u:p@" + l.Addr().String() + "/", DialTimeout: 200 * time.Millisecond})
	var first net.Conn
	select {
	case first = <-accepted:
		defer first.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("the consumer did not connect")
	}
	// The consumer sends its protocol header, waits for an answer that
	// never comes, and closes the connection.
	if err := first.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(io.Discard, first)
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		t.Fatal("the consumer kept the silent connection open")
	}
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("the consumer did not dial again after the handshake timed out")
	}
}
