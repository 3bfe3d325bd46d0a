package config

import (
	"slices"
	"strings"
)

// noEffect are the keys of docker-worker's final configuration that this
// worker accepts and ignores, so that a worker pool's workerConfig written
// for docker-worker does not stop the worker at boot. A key listed here
// covers everything under it. Load records each one a file gives (see
// Config.Ignored); the worker logs them in one warning.
//
// A key that a later version implements gets a field of Config instead:
// fields are matched first, so an entry here never hides one.
var noEffect = []struct{ key, why string }{
	// Did nothing in docker-worker's final version either.
	{"createQueue", "unused upstream (a Pulse relic)"},
	{"pulse.username", "unused upstream (a Pulse relic); pulse.url configures the broker"},
	{"pulse.password", "unused upstream (a Pulse relic); pulse.url configures the broker"},
	{"task.dequeueCount", "unused upstream (an Azure queue relic)"},
	{"logging.liveLogChunkInterval", "unused upstream (an Azure live log relic)"},
	{"garbageCollection.interval", "unused upstream: collection runs before each claim"},
	{"schema", "used only by docker-worker's schema upload script"},
	// Did something upstream; not implemented by this worker.
	{"monitorProject", "the service name of docker-worker's monitor; logs here carry no service name"},
	{"testMode", "docker-worker's test-only halt message"},
	{"alivenessCheckInterval", "docker-worker's periodic aliveness log line"},
	{"influx.connectionString", "docker-worker's Influx connection string; influx.url and its keys configure the metrics here"},
	{"influx.maxDelay", "docker-worker's Influx flush delay; influx.flushInterval here"},
	{"influx.maxPendingPoints", "docker-worker's Influx queue bound; influx.batchSize and influx.bufferSize here"},
	{"influx.allowHTTP", "docker-worker's Influx client option; the scheme of influx.url decides here"},
	{"statelessHostname", "stateless DNS host names for the live log are not implemented; host names the live log"},
}

// runnerOnly are keys worker-runner's generic-worker launcher writes that
// have no docker-worker counterpart; with LoadOptions.RunnerKeys they are
// accepted silently (they are the runner's, not the operator's).
var runnerOnly = []string{"availabilityZone", "workerTypeMetadata"}

// runnerAliases map the generic-worker spellings of the keys that
// worker-runner's generic-worker launcher writes to docker-worker's keys
// (LoadOptions.RunnerKeys).
var runnerAliases = map[string]string{
	"rootURL":     "rootUrl",
	"clientId":    "taskcluster.clientId",
	"accessToken": "taskcluster.accessToken",
	"certificate": "taskcluster.certificate",
	"publicIP":    "publicIp",
	"privateIP":   "privateIp",
	"instanceID":  "instanceId",
}

// ignoredKey reports whether key path is, or is under, a noEffect key.
func ignoredKey(path string) bool {
	for _, n := range noEffect {
		if path == n.key || strings.HasPrefix(path, n.key+".") {
			return true
		}
	}
	return false
}

// Ignored are the keys the configuration gave that have no effect here
// (see NoEffectReason), in the order given.
func (c *Config) Ignored() []string { return slices.Clone(c.ignored) }

// NoEffectReason says why key, one of Config.Ignored, has no effect.
func NoEffectReason(key string) string {
	for _, n := range noEffect {
		if key == n.key || strings.HasPrefix(key, n.key+".") {
			return n.why
		}
	}
	return ""
}
