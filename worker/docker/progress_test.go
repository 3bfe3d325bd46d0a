package docker

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/jsonstream"

	"go.dockerworker.dev/docker-worker/worker/flight"
)

func TestProgressLines(t *testing.T) {
	var out strings.Builder
	started := map[string]time.Time{}
	msgs := []jsonstream.Message{
		{ID: "latest", Status: "Pulling from x/y"},
		{ID: "aaa", Status: "Already exists"},
		{ID: "bbb", Status: "Pulling fs layer"},
		{ID: "bbb", Status: "Downloading", Progress: &jsonstream.Progress{Current: 1, Total: 2}},
		{ID: "bbb", Status: "Download complete"},
		{ID: "bbb", Status: "Extracting", Progress: &jsonstream.Progress{Current: 1, Total: 2}},
		{ID: "bbb", Status: "Pull complete"},
		{ID: "ccc", Status: "Download complete"},
		{Status: "Digest: sha256:00"},
		{Status: "Status: Downloaded newer image for x/y:latest"},
	}
	var pulls flight.Group[string, string]
	pulls.Do(t.Context(), "x/y", &out, "", func(_ context.Context, pl *pull) (string, error) {
		for _, m := range msgs {
			progressLine(pl, m, started)
		}
		return "", nil
	})
	want := regexp.MustCompile(`^aaa - Already exists
bbb - Started downloading
bbb - Downloaded in \d+\.\d{3} seconds
ccc - Downloaded
Digest: sha256:00
Status: Downloaded newer image for x/y:latest
$`)
	if got := out.String(); !want.MatchString(got) {
		t.Errorf("progress =\n%s\nwant it to match\n%s", got, want)
	}

}
