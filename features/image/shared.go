package image

import (
	"fmt"
	"time"

	"go.dockerworker.dev/docker-worker/worker/flight"
	"go.dockerworker.dev/docker-worker/worker/tasklog"
)

// loaded is what a load produced.
type loaded struct {
	id     string // image ID
	sha256 string // hex sha256 of the artifact
	cached bool   // found in Docker, nothing loaded
	bytes  int64  // the artifact's bytes read from the queue
}

// group shares one load of an artifact image between the tasks that need
// it at the same time (see worker/flight): every waiting task receives its
// progress lines, and the load is abandoned only when every one of them
// has given up.
type group = flight.Group[string, loaded]

// call is one load in progress.
type call = flight.Call[loaded]

// callf writes one information line to every waiting task's log.
func callf(c *call, format string, args ...any) {
	c.Write(tasklog.InfoLine(time.Now(), fmt.Sprintf(format, args...)))
}
