// Package pulse listens on the deployment's Pulse broker (RabbitMQ) for the
// queue's task-exception messages about one worker's runs, so that a run
// the queue cancels is stopped within moments instead of at the next status
// poll or reclaim.
//
// A [Consumer] declares its own exclusive, auto-deleted queue, binds it to
// exchange/taskcluster-queue/v1/task-exception with a routing key that only
// matches runs held by its worker group and worker ID, and hands each
// message's task ID, run ID and reason to a callback. When the broker goes
// away it logs that once, reconnects with capped backoff and binds a new
// queue; messages published while it was away are lost, so status polling
// stays the worker's fallback. It is a leaf package: it knows nothing of the
// worker core or of features (worker/wiring connects it to the run
// registry).
package pulse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"go.dockerworker.dev/docker-worker/worker/internal/backoff"
	"go.dockerworker.dev/docker-worker/worker/slugid"
)

// Exchange is the queue's task-exception exchange.
const Exchange = "exchange/taskcluster-queue/v1/task-exception"

// DefaultBackoff is the pause between reconnection attempts: from one
// second, doubling, capped at a minute, ±25 %.
var DefaultBackoff = backoff.Policy{Base: time.Second, Max: time.Minute, Jitter: 0.25}

// Config configures a [Consumer].
type Config struct {
	// URL is the broker, amqp://user:password@host:port/vhost or amqps://.
	URL string
	// WorkerGroup and WorkerID name the worker whose runs are listened to.
	WorkerGroup string
	WorkerID    string
	// Logger receives connection events (never the password); nil
	// discards them.
	Logger *slog.Logger
	// Backoff is the pause between reconnection attempts; a zero Base
	// means [DefaultBackoff].
	Backoff backoff.Policy
	// DialTimeout bounds each connection attempt, the TCP dial and the
	// AMQP handshake together; zero means [DefaultDialTimeout].
	DialTimeout time.Duration
	// Heartbeat is the AMQP heartbeat interval the consumer asks for (the
	// broker may lower it; whole seconds): a connection that carries no
	// frame for one and a half intervals is taken as dead and redialled. Zero means
	// [DefaultHeartbeat].
	Heartbeat time.Duration
}

// Defaults applied by New to zero Config fields.
const (
	DefaultDialTimeout = 10 * time.Second
	DefaultHeartbeat   = 10 * time.Second
)

// ExceptionFunc is told about a run of the worker that the queue resolved
// as exception: its task ID, run ID and reasonResolved ("canceled",
// "deadline-exceeded", ...; "" when the message does not say). It is
// called from the consumer's goroutine, one message at a time, and must
// not block.
type ExceptionFunc func(taskID string, runID int, reason string)

// Consumer receives the task-exception messages of one worker's runs.
// Create it with [New] and start it with [Consumer.Run].
type Consumer struct {
	cfg      Config
	user     string
	redacted string
	on       ExceptionFunc
	log      *slog.Logger
	bound    atomic.Int64
}

// New checks cfg and returns a consumer that calls on for each message;
// it connects only in [Consumer.Run].
func New(cfg Config, on ExceptionFunc) (*Consumer, error) {
	uri, err := amqp.ParseURI(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("pulse: broker URL: %w", scrubURL(err, cfg.URL))
	}
	if cfg.WorkerGroup == "" || cfg.WorkerID == "" {
		return nil, errors.New("pulse: the worker group and worker ID are required")
	}
	if on == nil {
		return nil, errors.New("pulse: no callback")
	}
	if cfg.Backoff.Base <= 0 {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	redacted := "(broker)"
	if u, err := url.Parse(cfg.URL); err == nil {
		redacted = u.Redacted()
	}
	return &Consumer{cfg: cfg, user: uri.Username, redacted: redacted, on: on, log: log}, nil
}

// RoutingKey is the binding pattern for the runs of workerGroup/workerId:
// the queue's routing keys are
// primary.<taskId>.<runId>.<workerGroup>.<workerId>.<provisionerId>.<workerType>.<schedulerId>.<taskGroupId>.<reserved>.
func RoutingKey(workerGroup, workerID string) string {
	return "primary.*.*." + workerGroup + "." + workerID + ".#"
}

// Bindings is how many times the consumer has bound a queue and started
// consuming since it was created (one more after each reconnection).
func (c *Consumer) Bindings() int64 { return c.bound.Load() }

// Run connects, consumes and reconnects until ctx is done, then closes its
// connection and returns. Callers start it on a goroutine of their own.
func (c *Consumer) Run(ctx context.Context) {
	attempt := 0
	down := false
	for ctx.Err() == nil {
		bound, err := c.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if bound {
			attempt, down = 0, false
		}
		attempt++
		d := c.cfg.Backoff.Delay(attempt)
		if !down {
			down = true
			c.log.Warn("pulse: no connection to the broker; cancellations are noticed by status polling until it is back",
				"broker", c.redacted, "error", err, "retryIn", d)
		} else {
			c.log.Debug("pulse: reconnection failed", "broker", c.redacted, "error", err, "retryIn", d)
		}
		if backoff.Wait(ctx, d) != nil {
			return
		}
	}
}

// session runs one connection: it dials, binds a new queue and hands over
// messages until the connection ends. bound reports whether it got as far
// as consuming.
func (c *Consumer) session(ctx context.Context) (bound bool, err error) {
	// Stopping must not wait for a dial or handshake to time out: the
	// socket is closed as soon as ctx ends.
	var (
		mu  sync.Mutex
		raw net.Conn
	)
	stopRaw := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if raw != nil {
			raw.Close()
		}
	})
	defer stopRaw()
	conn, err := amqp.DialConfig(c.cfg.URL, amqp.Config{
		// Heartbeats are what notice a connection that went silent
		// without a FIN or RST (a dead NAT entry, a frozen broker): the
		// client gives up on a connection that carried nothing for 1.5
		// intervals. A heartbeat=N parameter in the URL overrides it.
		Heartbeat: c.cfg.Heartbeat,
		Dial: func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: c.cfg.DialTimeout}
			nc, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// Cleared by the client once the AMQP handshake is done.
			if err := nc.SetDeadline(time.Now().Add(c.cfg.DialTimeout)); err != nil {
				nc.Close()
				return nil, err
			}
			mu.Lock()
			defer mu.Unlock()
			raw = nc
			if ctx.Err() != nil {
				nc.Close()
			}
			return nc, nil
		},
		Properties: amqp.Table{
			"connection_name": "docker-worker " + c.cfg.WorkerGroup + "/" + c.cfg.WorkerID,
		},
	})
	if err != nil {
		return false, fmt.Errorf("connect: %w", scrubURL(err, c.cfg.URL))
	}
	defer conn.Close()
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	ch, err := c.bind(conn)
	if err != nil {
		return false, err
	}
	c.bound.Add(1)
	c.log.Info("pulse: listening for cancellations", "broker", c.redacted, "exchange", Exchange,
		"routingKey", RoutingKey(c.cfg.WorkerGroup, c.cfg.WorkerID))
	for d := range ch {
		c.handle(d)
	}
	select {
	case e := <-closed:
		if e != nil {
			return true, e
		}
	default:
	}
	return true, errors.New("the broker closed the connection")
}

// bind declares the queue, binds it and starts consuming.
func (c *Consumer) bind(conn *amqp.Connection) (<-chan amqp.Delivery, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open channel: %w", err)
	}
	// A deployment's exchange exists and its users may not declare it; a
	// local broker's may not exist yet (the queue declares it on its first
	// message), so declare it when missing and allowed.
	if err := ch.ExchangeDeclarePassive(Exchange, "topic", true, false, false, false, nil); err != nil {
		if ch, err = conn.Channel(); err != nil {
			return nil, fmt.Errorf("open channel: %w", err)
		}
		if err := ch.ExchangeDeclare(Exchange, "topic", true, false, false, false, nil); err != nil {
			return nil, fmt.Errorf("exchange %s is missing and cannot be declared: %w", Exchange, err)
		}
	}
	q, err := ch.QueueDeclare(c.queueName(), false, true, true, false, nil)
	if err != nil {
		return nil, fmt.Errorf("declare queue: %w", err)
	}
	if err := ch.QueueBind(q.Name, RoutingKey(c.cfg.WorkerGroup, c.cfg.WorkerID), Exchange, false, nil); err != nil {
		return nil, fmt.Errorf("bind queue to %s: %w", Exchange, err)
	}
	d, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		return nil, fmt.Errorf("consume: %w", err)
	}
	return d, nil
}

// queueName follows Pulse's rule that a user's queues are named
// queue/<user>/...; a new suffix per connection keeps an exclusive queue
// the broker has not dropped yet from blocking the next.
func (c *Consumer) queueName() string {
	return "queue/" + c.user + "/docker-worker/" + c.cfg.WorkerGroup + "/" + c.cfg.WorkerID + "/" + slugid.Nice()
}

// handle decodes one message and calls the callback when it is about a
// run of this worker.
func (c *Consumer) handle(d amqp.Delivery) {
	taskID, runID, reason, err := c.decode(d.Body)
	if err != nil {
		c.log.Debug("pulse: message ignored", "routingKey", d.RoutingKey, "error", err)
		return
	}
	c.on(taskID, runID, reason)
}

// exceptionMessage is the part of a task-exception message the consumer
// reads (queue/v1/task-exception-message.json).
type exceptionMessage struct {
	Status struct {
		TaskID string `json:"taskId"`
		Runs   []struct {
			ReasonResolved string `json:"reasonResolved"`
		} `json:"runs"`
	} `json:"status"`
	RunID       *int   `json:"runId"`
	WorkerGroup string `json:"workerGroup"`
	WorkerID    string `json:"workerId"`
}

// decode reads a message body; an error means the message is not about a
// run of this worker.
func (c *Consumer) decode(body []byte) (taskID string, runID int, reason string, err error) {
	var m exceptionMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return "", 0, "", fmt.Errorf("decode: %w", err)
	}
	switch {
	case m.Status.TaskID == "":
		return "", 0, "", errors.New("no status.taskId")
	case m.RunID == nil:
		return "", 0, "", errors.New("no runId (no run was started)")
	case m.WorkerGroup != c.cfg.WorkerGroup || m.WorkerID != c.cfg.WorkerID:
		return "", 0, "", fmt.Errorf("run of worker %s/%s", m.WorkerGroup, m.WorkerID)
	}
	runID = *m.RunID
	if runID < 0 {
		return "", 0, "", fmt.Errorf("runId %d", runID)
	}
	if runID < len(m.Status.Runs) {
		reason = m.Status.Runs[runID].ReasonResolved
	}
	return m.Status.TaskID, runID, reason, nil
}

// scrubURL keeps the broker URL (and its password) out of an error.
func scrubURL(err error, rawURL string) error {
	if ne, ok := errors.AsType[*net.OpError](err); ok {
		return ne
	}
	if rawURL != "" && strings.Contains(err.Error(), rawURL) {
		return errors.New(strings.ReplaceAll(err.Error(), rawURL, "(broker URL)"))
	}
	return err
}
