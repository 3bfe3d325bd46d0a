package docker

import (
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/jsonstream"
)

func TestProgressLines(t *testing.T) {
	var out strings.Builder
	w := &waiter{}
	pl := &pull{outs: map[*waiter]io.Writer{w: &out}}
	started := map[string]time.Time{}
	for _, m := range []jsonstream.Message{
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
	} {
		progressLine(pl, m, started)
	}
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

	// A waiter that has left gets nothing more.
	delete(pl.outs, w)
	pl.printf("after-leaving")
	if strings.Contains(out.String(), "after-leaving") {
		t.Error("progress written after the waiter left")
	}
}
