package config

import (
	"net/url"
	"time"
)

// InfluxConfig sends the worker's metrics (per-run phase durations,
// capacity, claim errors, recoveries) to InfluxDB. Writes are batched and
// never wait on the server: points that cannot be sent in time are
// dropped and counted. Times are milliseconds.
//
// A 2.x server (or InfluxDB Cloud) is addressed with org, bucket and
// token; a 1.x server (1.8 or later, through its /api/v2/write
// compatibility endpoint) with database and, optionally, retentionPolicy,
// username and password. Exactly one of bucket and database is set.
type InfluxConfig struct {
	// URL is the server, http(s)://host:port. Empty: no metrics are sent.
	URL string `yaml:"url"`

	// Org, Bucket and Token address a 2.x server.
	Org    string `yaml:"org"`
	Bucket string `yaml:"bucket"`
	Token  string `yaml:"token"`

	// Database, RetentionPolicy ("" for the database's default), Username
	// and Password address a 1.x server.
	Database        string `yaml:"database"`
	RetentionPolicy string `yaml:"retentionPolicy"`
	Username        string `yaml:"username"`
	Password        string `yaml:"password"`

	// BatchSize is the most points one write sends.
	BatchSize int `yaml:"batchSize"`
	// FlushInterval (ms) is the longest a point waits for its batch to
	// fill before it is sent anyway, and the pause before a failed batch
	// is tried again.
	FlushInterval int `yaml:"flushInterval"`
	// BufferSize is how many points wait while InfluxDB is slow or down;
	// newer points are dropped (and counted) beyond it.
	BufferSize int `yaml:"bufferSize"`
	// WriteTimeout (ms) bounds one write request.
	WriteTimeout int `yaml:"writeTimeout"`
	// CapacityInterval (ms) is how often the capacity point is written.
	CapacityInterval int `yaml:"capacityInterval"`
}

// MetricsCollectionConfig is docker-worker's metricsCollection section.
type MetricsCollectionConfig struct {
	// HostMetricsInterval (ms) is how often the host's CPU, memory and
	// Docker volume disk are measured and written (with influx.url); 0
	// turns the host points off.
	HostMetricsInterval int `yaml:"hostMetricsInterval"`
}

// DefaultHostMetricsInterval is docker-worker's metricsCollection default.
const DefaultHostMetricsInterval = 60000

// Influx defaults.
const (
	DefaultInfluxBatchSize        = 500
	DefaultInfluxFlushInterval    = 10000
	DefaultInfluxBufferSize       = 10000
	DefaultInfluxWriteTimeout     = 10000
	DefaultInfluxCapacityInterval = 60000
)

func (c *Config) defaultInflux() {
	c.Influx = InfluxConfig{
		BatchSize:        DefaultInfluxBatchSize,
		FlushInterval:    DefaultInfluxFlushInterval,
		BufferSize:       DefaultInfluxBufferSize,
		WriteTimeout:     DefaultInfluxWriteTimeout,
		CapacityInterval: DefaultInfluxCapacityInterval,
	}
	c.MetricsCollection = MetricsCollectionConfig{HostMetricsInterval: DefaultHostMetricsInterval}
}

// validateInflux checks the influx.* keys. Problems never quote the URL,
// the token or the password.
func (c *Config) validateInflux(bad func(key, format string, args ...any)) {
	if c.MetricsCollection.HostMetricsInterval < 0 {
		bad("metricsCollection.hostMetricsInterval", "must be 0 (off) or more, got %d", c.MetricsCollection.HostMetricsInterval)
	}
	i := c.Influx
	if i.URL == "" {
		return
	}
	u, err := url.Parse(i.URL)
	switch {
	case err != nil:
		bad("influx.url", "is not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		bad("influx.url", "must be an http:// or https:// URL, got scheme %q", u.Scheme)
	case u.Host == "":
		bad("influx.url", "must name the server's host")
	case u.User != nil:
		bad("influx.url", "must not hold credentials (use influx.token, or influx.username and influx.password)")
	}
	v2 := i.Org != "" || i.Bucket != "" || i.Token != ""
	v1 := i.Database != "" || i.RetentionPolicy != "" || i.Username != "" || i.Password != ""
	switch {
	case v1 && v2:
		bad("influx", "give either org, bucket and token (InfluxDB 2) or database, retentionPolicy, username and password (InfluxDB 1.8+), not both")
	case v2 && i.Bucket == "":
		bad("influx.bucket", "is required with influx.org or influx.token")
	case v2 && i.Org == "":
		bad("influx.org", "is required with influx.bucket")
	case v1 && i.Database == "":
		bad("influx.database", "is required with influx.retentionPolicy, influx.username or influx.password")
	case v1 && (i.Username == "") != (i.Password == ""):
		bad("influx.username", "and influx.password go together")
	case !v1 && !v2:
		bad("influx", "needs influx.bucket and influx.org (InfluxDB 2) or influx.database (InfluxDB 1.8+) with influx.url")
	}
	for _, f := range []struct {
		key string
		val int
	}{
		{"influx.batchSize", i.BatchSize},
		{"influx.flushInterval", i.FlushInterval},
		{"influx.writeTimeout", i.WriteTimeout},
		{"influx.capacityInterval", i.CapacityInterval},
	} {
		if f.val < 1 {
			bad(f.key, "must be at least 1, got %d", f.val)
		}
	}
	if i.BufferSize < i.BatchSize {
		bad("influx.bufferSize", "must be at least influx.batchSize (%d), got %d", i.BatchSize, i.BufferSize)
	}
}

// InfluxFlushInterval is Influx.FlushInterval as a duration.
func (c *Config) InfluxFlushInterval() time.Duration {
	return time.Duration(c.Influx.FlushInterval) * time.Millisecond
}

// InfluxWriteTimeout is Influx.WriteTimeout as a duration.
func (c *Config) InfluxWriteTimeout() time.Duration {
	return time.Duration(c.Influx.WriteTimeout) * time.Millisecond
}

// InfluxCapacityInterval is Influx.CapacityInterval as a duration.
func (c *Config) InfluxCapacityInterval() time.Duration {
	return time.Duration(c.Influx.CapacityInterval) * time.Millisecond
}

// HostMetricsInterval is MetricsCollection.HostMetricsInterval as a
// duration (0: no host points).
func (c *Config) HostMetricsInterval() time.Duration {
	return time.Duration(c.MetricsCollection.HostMetricsInterval) * time.Millisecond
}
