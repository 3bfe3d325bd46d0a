package localqueue

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"go.dockerworker.dev/docker-worker/worker/internal/backoff"
)

// Pulse: every state change that the real queue announces is turned into a
// [Message] (exchange, routing key, CCs and body as in the queue's
// exchanges.json) and committed to the store's outbox in the same atomic
// change as the state it announces. A background loop ([Queue.Run]) hands
// the outbox to the [Publisher] in order and removes what the broker
// confirmed. A broker outage therefore never blocks or fails an API call:
// messages wait in the outbox (on disk, for a durable store) and are
// retried with backoff until the broker is back.

// ExchangePrefix is the prefix of the queue's exchange names.
const ExchangePrefix = "exchange/taskcluster-queue/v1/"

// The exchanges the queue publishes on (without ExchangePrefix).
const (
	ExchangeTaskDefined       = "task-defined"
	ExchangeTaskPending       = "task-pending"
	ExchangeTaskRunning       = "task-running"
	ExchangeArtifactCreated   = "artifact-created"
	ExchangeTaskCompleted     = "task-completed"
	ExchangeTaskFailed        = "task-failed"
	ExchangeTaskException     = "task-exception"
	ExchangeTaskGroupResolved = "task-group-resolved"
)

// Exchanges lists every exchange the queue publishes on, with its prefix.
func Exchanges() []string {
	names := []string{
		ExchangeTaskDefined, ExchangeTaskPending, ExchangeTaskRunning, ExchangeArtifactCreated,
		ExchangeTaskCompleted, ExchangeTaskFailed, ExchangeTaskException, ExchangeTaskGroupResolved,
	}
	for i, n := range names {
		names[i] = ExchangePrefix + n
	}
	return names
}

// Message is one Pulse message: published on Exchange (a durable topic
// exchange) with RoutingKey, CC'ed to the routing keys in CC (sent as the
// `CC` header), with a JSON Body (content type application/json).
type Message struct {
	Exchange   string          `json:"exchange"`
	RoutingKey string          `json:"routingKey"`
	CC         []string        `json:"cc,omitempty"`
	Body       json.RawMessage `json:"body"`
}

// Publisher delivers messages to a broker.
type Publisher interface {
	// Publish sends msgs in order and returns nil only when the broker has
	// confirmed every one of them; on error any of them may have been
	// delivered (delivery is at least once). The Queue calls it from one
	// goroutine at a time; ctx bounds the call.
	Publish(ctx context.Context, msgs []Message) error
}

// taskPulseDefinition is task-pulse-definition.json.
type taskPulseDefinition struct {
	Tags map[string]string `json:"tags"`
}

// taskMessage is the body of every task-level message; the fields a given
// exchange does not carry are left empty.
type taskMessage struct {
	Version     int                  `json:"version"`
	Status      taskStatus           `json:"status"`
	RunID       *int                 `json:"runId,omitempty"`
	WorkerGroup string               `json:"workerGroup,omitempty"`
	WorkerID    string               `json:"workerId,omitempty"`
	TakenUntil  string               `json:"takenUntil,omitempty"`
	Task        *taskPulseDefinition `json:"task,omitempty"`
	Artifact    *artifactJSON        `json:"artifact,omitempty"`
}

type taskGroupMessage struct {
	Version     int    `json:"version"`
	TaskGroupID string `json:"taskGroupId"`
	SchedulerID string `json:"schedulerId"`
	Expires     string `json:"expires"`
}

// routingWord is a routing-key word, `_` when absent.
func routingWord(s string) string {
	if s == "" {
		return "_"
	}
	return s
}

// taskRoutingKey is the primary routing key of task messages:
// primary.<taskId>.<runId>.<workerGroup>.<workerId>.<provisionerId>.<workerType>.<schedulerId>.<taskGroupId>._
func taskRoutingKey(st taskStatus, runID *int, workerGroup, workerID string) string {
	run := "_"
	if runID != nil {
		run = strconv.Itoa(*runID)
	}
	return strings.Join([]string{
		"primary", st.TaskID, run, routingWord(workerGroup), routingWord(workerID),
		st.ProvisionerID, st.WorkerType, st.SchedulerID, st.TaskGroupID, "_",
	}, ".")
}

func taskCC(routes []string) []string {
	if len(routes) == 0 {
		return nil
	}
	cc := make([]string, len(routes))
	for i, r := range routes {
		cc[i] = "route." + r
	}
	return cc
}

// taskMsg builds a task-level message on exchange about rec (its current
// status). runID < 0 means no run; the worker is that of the run.
func taskMsg(exchange string, rec *TaskRecord, runID int, withTask bool, mutate func(*taskMessage)) Message {
	m := taskMessage{Version: 1, Status: rec.status()}
	if runID >= 0 {
		id := runID
		m.RunID = &id
		m.WorkerGroup, m.WorkerID = rec.Runs[runID].WorkerGroup, rec.Runs[runID].WorkerID
	}
	if withTask {
		m.Task = &taskPulseDefinition{Tags: rec.Task.Tags}
	}
	if mutate != nil {
		mutate(&m)
	}
	body, _ := json.Marshal(m) // plain structs: cannot fail
	return Message{
		Exchange:   ExchangePrefix + exchange,
		RoutingKey: taskRoutingKey(m.Status, m.RunID, m.WorkerGroup, m.WorkerID),
		CC:         taskCC(rec.Task.Routes),
		Body:       body,
	}
}

func msgTaskDefined(rec *TaskRecord) Message {
	return taskMsg(ExchangeTaskDefined, rec, -1, true, nil)
}

func msgTaskPending(rec *TaskRecord, runID int) Message {
	return taskMsg(ExchangeTaskPending, rec, runID, true, func(m *taskMessage) {
		m.WorkerGroup, m.WorkerID = "", "" // not in the schema
	})
}

func msgTaskRunning(rec *TaskRecord, runID int) Message {
	return taskMsg(ExchangeTaskRunning, rec, runID, true, func(m *taskMessage) {
		m.TakenUntil = formatTime(rec.Runs[runID].TakenUntil)
	})
}

func msgArtifactCreated(rec *TaskRecord, runID int, a ArtifactRecord) Message {
	return taskMsg(ExchangeArtifactCreated, rec, runID, false, func(m *taskMessage) {
		j := artifactToJSON(a)
		j.ContentLength = nil // not in the message schema
		m.Artifact = &j
	})
}

// msgResolved is the message announcing the resolution of a run.
func msgResolved(rec *TaskRecord, runID int) Message {
	exchange := ExchangeTaskException
	switch rec.Runs[runID].State {
	case stateCompleted:
		exchange = ExchangeTaskCompleted
	case stateFailed:
		exchange = ExchangeTaskFailed
	}
	return taskMsg(exchange, rec, runID, true, nil)
}

func msgTaskGroupResolved(groupID, schedulerID string, expires time.Time) Message {
	body, _ := json.Marshal(taskGroupMessage{Version: 1, TaskGroupID: groupID, SchedulerID: schedulerID, Expires: formatTime(expires)})
	return Message{
		Exchange:   ExchangePrefix + ExchangeTaskGroupResolved,
		RoutingKey: strings.Join([]string{"primary", groupID, schedulerID, "_"}, "."),
		Body:       body,
	}
}

// Outbox delivery.

const (
	outboxBatch      = 100
	outboxMinBackoff = 200 * time.Millisecond
	outboxMaxBackoff = 30 * time.Second
	publishTimeout   = 30 * time.Second
)

// wakeOutbox tells the delivery loop new messages are waiting.
func (q *Queue) wakeOutbox() {
	select {
	case q.outboxWake <- struct{}{}:
	default:
	}
}

// outboxBackoff is the pause after consecutive failed deliveries: 200 ms
// doubling up to 30 s, without jitter (there is one publisher per queue).
var outboxBackoff = backoff.Policy{Base: outboxMinBackoff, Max: outboxMaxBackoff}

// deliver hands the outbox to the publisher until ctx is done.
func (q *Queue) deliver(ctx context.Context) {
	failures := 0
	for {
		if failures > 0 {
			if backoff.Wait(ctx, outboxBackoff.Delay(failures)) != nil {
				return
			}
		}
		n, err := q.deliverBatch(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if failures == 0 {
				q.log.Warn("pulse: publishing failed; messages stay in the outbox and are retried", "err", err)
			} else {
				q.log.Debug("pulse: publishing failed again", "err", err)
			}
			failures++
			continue
		case failures > 0:
			q.log.Info("pulse: publishing works again")
		}
		failures = 0
		if n == outboxBatch {
			continue // more may be waiting
		}
		select {
		case <-ctx.Done():
			return
		case <-q.outboxWake:
		}
	}
}

// deliverBatch publishes the oldest messages of the outbox and acknowledges
// them; it returns how many it delivered.
func (q *Queue) deliverBatch(ctx context.Context) (int, error) {
	entries, err := q.store.Outbox(ctx, outboxBatch)
	if err != nil || len(entries) == 0 {
		return 0, err
	}
	msgs := make([]Message, len(entries))
	seqs := make([]uint64, len(entries))
	for i, e := range entries {
		msgs[i], seqs[i] = e.Message, e.Seq
	}
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	err = q.publisher.Publish(pctx, msgs)
	cancel()
	if err != nil {
		return 0, err
	}
	if err := q.store.Ack(ctx, seqs); err != nil {
		return 0, err
	}
	return len(entries), nil
}
