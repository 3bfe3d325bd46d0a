package metrics

import (
	"strconv"
	"time"
)

// Measurements of what a run fetched, mounted and uploaded, and of the
// worker's queue calls, spot notices and host. Like every point, they
// also carry the sink's tags.
const (
	// MeasurementImage is one point per run whose task image became
	// ready: tags kind (pull, task-image, indexed-image), cached ("true":
	// the image was in Docker already, nothing fetched) and shared
	// ("true": the run waited for a fetch another run started); fields
	// taskId, runId, ms (the image provider's time, a shared wait
	// included), bytes (the artifact's bytes read from the queue; for a
	// pull the image's size as Docker reports it; 0 when cached) and,
	// when something was fetched, bytesPerSecond.
	MeasurementImage = "image"
	// MeasurementArtifacts is one point per run and kind of upload, at the
	// run's resolution: tag kind ("artifacts": the uploads of the
	// artifacts phase, payload artifacts and the like; "logs": those
	// after it); fields taskId, runId, count, failed (uploads that gave
	// up), bytes (as sent), ms (the sum of the uploads' times; parallel
	// uploads overlap) and bytesPerSecond (bytes over ms).
	MeasurementArtifacts = "artifacts"
	// MeasurementCache is one point per volume cache mounted for a run:
	// tags cache (the name) and result (hit: an instance was reused;
	// miss: a new one was created); fields taskId, runId and count (1).
	MeasurementCache = "cache"
	// MeasurementQueueError is one point per call to a Taskcluster
	// service that failed for good: tags service, method (the API method,
	// e.g. reclaimTask) and code (the HTTP status, "none" without an
	// answer); fields count (1) and message.
	MeasurementQueueError = "queue_error"
	// MeasurementSpotNotice is written when the instance gets an
	// interruption notice: tag action (terminate, stop, hibernate); fields
	// count (1) and, when the notice gives a time, inSeconds (from now to
	// the interruption).
	MeasurementSpotNotice = "spot_notice"
	// MeasurementHost is written every metricsCollection.hostMetricsInterval:
	// fields cpuPercent (the share of CPU time not idle since the previous
	// point, all CPUs), memTotal, memFree (MemAvailable), memUsed (bytes),
	// diskTotal, diskFree, diskUsed (bytes, of the file system holding
	// dockerVolume) and uptimeSeconds (the host's).
	MeasurementHost = "host"
)

// Image writes an image point.
func Image(a Adder, taskID string, runID int, kind string, cached, shared bool, bytes int64, took time.Duration, at time.Time) {
	f := map[string]any{"taskId": taskID, "runId": runID, "ms": ms(took), "bytes": bytes}
	if !cached && bytes > 0 && took > 0 {
		f["bytesPerSecond"] = float64(bytes) / took.Seconds()
	}
	a.Add(MeasurementImage, map[string]string{
		"kind": kind, "cached": strconv.FormatBool(cached), "shared": strconv.FormatBool(shared),
	}, f, at)
}

// Cache writes a cache point.
func Cache(a Adder, taskID string, runID int, name string, hit bool, at time.Time) {
	result := "miss"
	if hit {
		result = "hit"
	}
	a.Add(MeasurementCache, map[string]string{"cache": name, "result": result},
		map[string]any{"taskId": taskID, "runId": runID, "count": 1}, at)
}

// QueueError writes a queue_error point; status is the HTTP answer (0:
// none).
func QueueError(a Adder, service, method string, status int, message string, at time.Time) {
	a.Add(MeasurementQueueError, map[string]string{"service": service, "method": method, "code": code(status)},
		map[string]any{"count": 1, "message": message}, at)
}

// SpotNotice writes a spot_notice point; when is the interruption's time
// (zero: unknown).
func SpotNotice(a Adder, action string, when, at time.Time) {
	f := map[string]any{"count": 1}
	if !when.IsZero() {
		f["inSeconds"] = when.Sub(at).Seconds()
	}
	a.Add(MeasurementSpotNotice, map[string]string{"action": action}, f, at)
}

// code is an HTTP status as a tag: "none" for 0.
func code(status int) string {
	if status == 0 {
		return "none"
	}
	return strconv.Itoa(status)
}

// uploads sums one kind of a run's uploads.
type uploads struct {
	count, failed int
	bytes         int64
	took          time.Duration
}

func (u *uploads) add(bytes int64, took time.Duration, failed bool) {
	u.count++
	if failed {
		u.failed++
	} else {
		u.bytes += bytes
	}
	u.took += took
}

// write writes u as an artifacts point of kind, if there was an upload.
func (u *uploads) write(a Adder, taskID string, runID int, kind string, at time.Time) {
	if u.count == 0 {
		return
	}
	f := map[string]any{
		"taskId": taskID, "runId": runID, "count": u.count, "failed": u.failed,
		"bytes": u.bytes, "ms": ms(u.took),
	}
	if u.took > 0 {
		f["bytesPerSecond"] = float64(u.bytes) / u.took.Seconds()
	}
	a.Add(MeasurementArtifacts, map[string]string{"kind": kind}, f, at)
}
