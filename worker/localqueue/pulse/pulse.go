// Package pulse publishes the embedded queue's Pulse messages to an AMQP
// 0-9-1 broker (RabbitMQ), as Taskcluster's queue does: durable topic
// exchanges named `exchange/taskcluster-queue/v1/<name>`, persistent JSON
// messages, the task's routes as `CC` routing keys, and publisher confirms.
//
// A [Publisher] implements [localqueue.Publisher]: the queue hands it
// batches from its outbox and removes them only once Publish has returned
// nil, so a broker that is down or refuses a message only delays delivery.
// Package server wires it in for the `queue` and `dev` commands.
package pulse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"go.dockerworker.dev/docker-worker/worker/localqueue"
)

// Config configures a [Publisher].
type Config struct {
	// URL is the broker, amqp://user:password@host:port/vhost (or amqps).
	URL string
	// DialTimeout bounds connecting to the broker. Default 10s.
	DialTimeout time.Duration
	// Logger receives connection events; nil discards them.
	Logger *slog.Logger
}

// Publisher publishes messages over one connection and one confirm-mode
// channel, opened on first use and reopened after any failure. It is safe
// for concurrent use (calls are serialised).
type Publisher struct {
	url         string
	dialTimeout time.Duration
	log         *slog.Logger

	mu       sync.Mutex
	conn     *amqp.Connection
	ch       *amqp.Channel
	declared map[string]bool
}

var _ localqueue.Publisher = (*Publisher)(nil)

// New checks cfg and returns a Publisher; it does not connect yet.
func New(cfg Config) (*Publisher, error) {
	if _, err := amqp.ParseURI(cfg.URL); err != nil {
		return nil, fmt.Errorf("pulse: broker URL: %w", err)
	}
	p := &Publisher{url: cfg.URL, dialTimeout: cfg.DialTimeout, log: cfg.Logger}
	if p.dialTimeout <= 0 {
		p.dialTimeout = 10 * time.Second
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	return p, nil
}

// Redacted returns the broker URL without its password, for logs.
func (p *Publisher) Redacted() string {
	u, err := url.Parse(p.url)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// Publish declares the exchanges it has not declared on this connection
// yet, publishes msgs in order and waits for the broker to confirm each.
func (p *Publisher) Publish(ctx context.Context, msgs []localqueue.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.connect(); err != nil {
		return err
	}
	confirms := make([]*amqp.DeferredConfirmation, 0, len(msgs))
	for _, m := range msgs {
		if !p.declared[m.Exchange] {
			if err := p.ch.ExchangeDeclare(m.Exchange, "topic", true, false, false, false, nil); err != nil {
				p.reset()
				return fmt.Errorf("pulse: declare exchange %s: %w", m.Exchange, err)
			}
			p.declared[m.Exchange] = true
		}
		msg := amqp.Publishing{
			ContentType:     "application/json",
			ContentEncoding: "utf-8",
			DeliveryMode:    amqp.Persistent,
			Timestamp:       time.Now(),
			Body:            m.Body,
		}
		if len(m.CC) > 0 {
			cc := make([]any, len(m.CC))
			for i, r := range m.CC {
				cc[i] = r
			}
			msg.Headers = amqp.Table{"CC": cc}
		}
		dc, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, m.Exchange, m.RoutingKey, false, false, msg)
		if err != nil {
			p.reset()
			return fmt.Errorf("pulse: publish on %s: %w", m.Exchange, err)
		}
		confirms = append(confirms, dc)
	}
	for i, dc := range confirms {
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			p.reset()
			return fmt.Errorf("pulse: waiting for the broker to confirm: %w", err)
		}
		if !ok {
			p.reset()
			return fmt.Errorf("pulse: broker refused the message on %s with routing key %s", msgs[i].Exchange, msgs[i].RoutingKey)
		}
	}
	return nil
}

// connect opens the connection and channel if they are not open.
func (p *Publisher) connect() error {
	if p.conn != nil && !p.conn.IsClosed() && p.ch != nil && !p.ch.IsClosed() {
		return nil
	}
	p.reset()
	conn, err := amqp.DialConfig(p.url, amqp.Config{
		Dial:       amqp.DefaultDial(p.dialTimeout),
		Properties: amqp.Table{"connection_name": "docker-worker embedded queue"},
	})
	if err != nil {
		return fmt.Errorf("pulse: connect to %s: %w", p.Redacted(), scrub(err))
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Confirm(false)
	}
	if err != nil {
		conn.Close()
		return fmt.Errorf("pulse: open confirm channel on %s: %w", p.Redacted(), err)
	}
	p.conn, p.ch, p.declared = conn, ch, map[string]bool{}
	p.log.Info("pulse: connected", "broker", p.Redacted())
	return nil
}

// scrub drops the URL (and so the password) a dial error may carry.
func scrub(err error) error {
	if ne, ok := errors.AsType[*net.OpError](err); ok {
		return ne
	}
	return err
}

// reset closes the connection after a failure; the next call reconnects.
func (p *Publisher) reset() {
	if p.ch != nil {
		_ = p.ch.Close()
	}
	if p.conn != nil {
		_ = p.conn.Close()
	}
	p.conn, p.ch, p.declared = nil, nil, nil
}

// Close closes the connection.
func (p *Publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reset()
	return nil
}
