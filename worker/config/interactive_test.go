package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestInteractiveKeys(t *testing.T) {
	c, err := Load(write(t, good+`
ssl: {certificate: /etc/shell.crt, key: /etc/shell.key}
interactive: {ssl: true, minTime: 5, expirationAfterSession: 7, artifactName: private/shells/, port: 61000, portRangeEnd: 61010, bindAddress: "::1"}
`), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := InteractiveConfig{SSL: true, MinTime: 5, ExpirationAfterSession: 7, ArtifactName: "private/shells/",
		Port: 61000, PortRangeEnd: 61010, BindAddress: "::1"}
	if diff := cmp.Diff(want, c.Interactive); diff != "" {
		t.Errorf("interactive (-want +got):\n%s", diff)
	}
}

func TestInteractiveDefaults(t *testing.T) {
	want := InteractiveConfig{SSL: true, MinTime: 180, ExpirationAfterSession: 900, ArtifactName: "private/docker-worker/"}
	if diff := cmp.Diff(want, Default().Interactive); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}

func TestInteractiveProblemsAllReported(t *testing.T) {
	for name, tt := range map[string]struct {
		yaml  string
		wants []string
	}{
		"out of range": {
			yaml: `interactive: {ssl: false, minTime: -1, expirationAfterSession: -2, artifactName: "", port: 70000, portRangeEnd: 10, bindAddress: somewhere}`,
			wants: []string{
				"interactive.minTime: must not be negative",
				"interactive.expirationAfterSession: must not be negative",
				"interactive.artifactName: must not be empty",
				"interactive.port: must be a port number (0 for any free port), got 70000",
				"interactive.portRangeEnd: must be a port number not below interactive.port (70000), got 10",
				`interactive.bindAddress: "somewhere" is not an IP address`,
			},
		},
		"range without a start": {
			yaml:  `interactive: {ssl: false, portRangeEnd: 61000}`,
			wants: []string{"interactive.portRangeEnd: needs interactive.port, the first port of the range"},
		},
		"tls without a certificate": {
			yaml:  "ssl: {certificate: \"\", key: \"\"}\ninteractive: {ssl: true}",
			wants: []string{"ssl.certificate: is required when interactive.ssl is true", "ssl.key: is required when interactive.ssl is true"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Load(write(t, good+"\n"+tt.yaml+"\n"), env(nil))
			if err == nil {
				t.Fatal("no error")
			}
			for _, want := range tt.wants {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q:\n%v", want, err)
				}
			}
		})
	}
}
