package config

import (
	"strings"
	"testing"
	"time"
)

func TestInfluxKeys(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       func(InfluxConfig) bool
		wantErr    string // "" when valid
	}{
		{name: "absent", yaml: "", want: func(i InfluxConfig) bool {
			return i.URL == "" && i.BatchSize == DefaultInfluxBatchSize && i.BufferSize == DefaultInfluxBufferSize &&
				i.FlushInterval == DefaultInfluxFlushInterval && i.CapacityInterval == DefaultInfluxCapacityInterval
		}},
		{name: "v2", yaml: "influx: {url: https://eu.influx.example, org: o, bucket: b, token: s3cret-token}\n",
			want: func(i InfluxConfig) bool { return i.Org == "o" && i.Bucket == "b" && i.Token == "s3cret-token" }},
		{name: "v1", yaml: "influx: {url: http://127.0.0.1:8086, database: workers, retentionPolicy: week, username: u, password: s3cret-pw}\n",
			want: func(i InfluxConfig) bool {
				return i.Database == "workers" && i.RetentionPolicy == "week" && i.Username == "u" && i.Password == "s3cret-pw"
			}},
		{name: "v1 without auth", yaml: "influx: {url: http://127.0.0.1:8086, database: workers, batchSize: 10, bufferSize: 10, flushInterval: 200, capacityInterval: 500}\n",
			want: func(i InfluxConfig) bool {
				return i.Database == "workers" && i.BatchSize == 10 && i.BufferSize == 10 && i.FlushInterval == 200 && i.CapacityInterval == 500
			}},
		{name: "both", yaml: "influx: {url: http://h:8086, database: d, bucket: b, org: o, token: s3cret-token}\n",
			wantErr: "influx: give either org, bucket and token"},
		{name: "neither", yaml: "influx: {url: http://h:8086}\n", wantErr: "influx: needs influx.bucket and influx.org"},
		{name: "v2 without bucket", yaml: "influx: {url: http://h:8086, org: o, token: s3cret-token}\n", wantErr: "influx.bucket: is required"},
		{name: "v2 without org", yaml: "influx: {url: http://h:8086, bucket: b, token: s3cret-token}\n", wantErr: "influx.org: is required"},
		{name: "v1 without database", yaml: "influx: {url: http://h:8086, username: u, password: s3cret-pw}\n", wantErr: "influx.database: is required"},
		{name: "v1 password alone", yaml: "influx: {url: http://h:8086, database: d, password: s3cret-pw}\n", wantErr: "influx.username: and influx.password go together"},
		{name: "scheme", yaml: "influx: {url: \"udp://h:8089\", database: d}\n", wantErr: `influx.url: must be an http:// or https:// URL, got scheme "udp"`},
		{name: "credentials in URL", yaml: "influx: {url: \"http://u:s3cret-pw@h:8086\", database: d}\n", wantErr: "influx.url: must not hold credentials"},
		{name: "no host", yaml: "influx: {url: \"http:///x\", database: d}\n", wantErr: "influx.url: must name the server's host"},
		{name: "batch size", yaml: "influx: {url: http://h:8086, database: d, batchSize: 0}\n", wantErr: "influx.batchSize: must be at least 1, got 0"},
		{name: "buffer below batch", yaml: "influx: {url: http://h:8086, database: d, batchSize: 100, bufferSize: 10}\n", wantErr: "influx.bufferSize: must be at least influx.batchSize (100), got 10"},
		{name: "capacity interval", yaml: "influx: {url: http://h:8086, database: d, capacityInterval: -1}\n", wantErr: "influx.capacityInterval: must be at least 1, got -1"},
		{name: "unknown key", yaml: "influx: {url: http://h:8086, database: d, precision: s}\n", wantErr: "influx.precision"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(write(t, identity+"workerId: w1\n"+tc.yaml), env(nil))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("the error shows a secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.want(c.Influx) {
				t.Errorf("got influx %+v", c.Influx)
			}
		})
	}
}

func TestInfluxDurations(t *testing.T) {
	c := Default()
	c.Influx.FlushInterval, c.Influx.WriteTimeout, c.Influx.CapacityInterval = 250, 1500, 60000
	if got := c.InfluxFlushInterval(); got != 250*time.Millisecond {
		t.Errorf("flush interval %v", got)
	}
	if got := c.InfluxWriteTimeout(); got != 1500*time.Millisecond {
		t.Errorf("write timeout %v", got)
	}
	if got := c.InfluxCapacityInterval(); got != time.Minute {
		t.Errorf("capacity interval %v", got)
	}
}
