package metrics

import (
	"bytes"
	"encoding/json"
	"io"
	"sync"
	"time"
)

// docker-worker's WORKER_METRICS event types.
const (
	EventInstanceBoot     = "instanceBoot"
	EventWorkerReady      = "workerReady"
	EventTaskQueue        = "taskQueue"
	EventTaskStart        = "taskStart"
	EventTaskFinish       = "taskFinish"
	EventInstanceShutdown = "instanceShutdown"
)

// TestWorkerInstance is the instanceId for which no WORKER_METRICS line
// is printed (docker-worker's test workers).
const TestWorkerInstance = "test-worker-instance"

// WorkerMetricsIdentity is who prints WORKER_METRICS lines.
type WorkerMetricsIdentity struct {
	WorkerPoolID string // provisionerId/workerType
	WorkerID     string
	Region       string
	InstanceType string
	// InstanceID TestWorkerInstance turns the lines off.
	InstanceID string
}

// WorkerMetrics prints docker-worker's WORKER_METRICS lines, read by
// Mozilla's worker-metrics pipeline: an empty line, then
// `WORKER_METRICS ` and one JSON object with, in order, eventType,
// worker ("docker-worker"), workerPoolId, workerId, timestamp (Unix
// seconds), region and instanceType (left out when unknown), and, for
// task events, taskId and runId; then a line end. Each line is one Write.
// Safe for concurrent use.
type WorkerMetrics struct {
	mu  sync.Mutex
	w   io.Writer
	id  WorkerMetricsIdentity
	off bool
}

// NewWorkerMetrics prints to w for id.
func NewWorkerMetrics(w io.Writer, id WorkerMetricsIdentity) *WorkerMetrics {
	return &WorkerMetrics{w: w, id: id, off: id.InstanceID == TestWorkerInstance}
}

// workerMetricsRecord is one line's object; the field order is the
// line's.
type workerMetricsRecord struct {
	EventType    string `json:"eventType"`
	Worker       string `json:"worker"`
	WorkerPoolID string `json:"workerPoolId"`
	WorkerID     string `json:"workerId"`
	Timestamp    int64  `json:"timestamp"`
	Region       string `json:"region,omitempty"`
	InstanceType string `json:"instanceType,omitempty"`
	TaskID       string `json:"taskId,omitempty"`
	RunID        *int   `json:"runId,omitempty"`
}

// Worker prints an event of the worker (instanceBoot, workerReady,
// instanceShutdown) that happened at at.
func (m *WorkerMetrics) Worker(eventType string, at time.Time) {
	m.print(eventType, at, "", nil)
}

// Task prints an event of a run (taskQueue, taskStart, taskFinish).
func (m *WorkerMetrics) Task(eventType string, at time.Time, taskID string, runID int) {
	m.print(eventType, at, taskID, &runID)
}

func (m *WorkerMetrics) print(eventType string, at time.Time, taskID string, runID *int) {
	if m.off {
		return
	}
	var b bytes.Buffer
	b.WriteString("\nWORKER_METRICS ")
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // as JavaScript's JSON.stringify
	if err := enc.Encode(workerMetricsRecord{
		EventType: eventType, Worker: "docker-worker",
		WorkerPoolID: m.id.WorkerPoolID, WorkerID: m.id.WorkerID,
		Timestamp: at.Unix(), Region: m.id.Region, InstanceType: m.id.InstanceType,
		TaskID: taskID, RunID: runID,
	}); err != nil {
		return // strings and integers always encode
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	_, _ = m.w.Write(b.Bytes())
}
