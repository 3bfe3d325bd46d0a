package config

import (
	"strings"
	"testing"
)

func TestStatusAndLogFormatKeys(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		check      func(t *testing.T, c *Config)
		wantErr    []string
	}{
		{name: "defaults", yaml: "", check: func(t *testing.T, c *Config) {
			if c.Status.Listen != "" || c.Logging.Format != "json" {
				t.Errorf("got status %+v, format %q", c.Status, c.Logging.Format)
			}
		}},
		{name: "set", yaml: "status: {listen: '127.0.0.1:9111'}\nlogging: {format: text}\n", check: func(t *testing.T, c *Config) {
			if c.Status.Listen != "127.0.0.1:9111" || c.Logging.Format != "text" {
				t.Errorf("got status %+v, format %q", c.Status, c.Logging.Format)
			}
		}},
		{name: "bad", yaml: "status: {listen: '9111'}\nlogging: {format: xml}\n", wantErr: []string{
			`status.listen: must be host:port (127.0.0.1:PORT recommended), got "9111"`,
			`logging.format: must be "json" or "text", got "xml"`,
		}},
		{name: "bad port", yaml: "status: {listen: '127.0.0.1:http'}\n", wantErr: []string{
			`status.listen: port must be a number from 0 to 65535, got "http"`,
		}},
		{name: "unknown key", yaml: "status: {port: 5}\n", wantErr: []string{"status.port: unknown key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(write(t, tc.yaml+identity+"workerId: w1\n"), env(nil))
			if tc.wantErr != nil {
				if err == nil {
					t.Fatal("no error")
				}
				for _, want := range tc.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error lacks %q:\n%v", want, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}
