package e2e

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"go.dockerworker.dev/docker-worker/features"
)

// taskLogs is an always-on feature that keeps every task log in memory, so
// that tests can wait for a line while the task runs and read logs that are
// never uploaded (a canceled task's).
type taskLogs struct {
	mu   sync.Mutex
	logs map[string]*lockedBuffer // by taskId/runId
}

var (
	_ features.Feature  = (*taskLogs)(nil)
	_ features.AlwaysOn = (*taskLogs)(nil)
)

func newTaskLogs() *taskLogs { return &taskLogs{logs: map[string]*lockedBuffer{}} }

func (c *taskLogs) Name() string   { return "e2eTaskLogs" }
func (c *taskLogs) AlwaysOn() bool { return true }

func (c *taskLogs) NewTask(t features.Task) (features.TaskFeature, error) {
	return &taskLogsTask{buf: c.buf(t.TaskID(), t.RunID())}, nil
}

func (c *taskLogs) buf(taskID string, runID int) *lockedBuffer {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := taskID + "/" + strconv.Itoa(runID)
	if c.logs[key] == nil {
		c.logs[key] = &lockedBuffer{}
	}
	return c.logs[key]
}

// text is the task log of the run so far.
func (c *taskLogs) text(taskID string, runID int) string { return c.buf(taskID, runID).String() }

// waitFor waits until the run's task log contains want.
func (c *taskLogs) waitFor(t *testing.T, taskID string, runID int, want string, within time.Duration) {
	t.Helper()
	for start := time.Now(); !strings.Contains(c.text(taskID, runID), want); time.Sleep(50 * time.Millisecond) {
		if time.Since(start) > within {
			t.Fatalf("task log has no %q after %v; log:\n%s", want, within, c.text(taskID, runID))
		}
	}
}

type taskLogsTask struct{ buf *lockedBuffer }

var _ features.Opener = (*taskLogsTask)(nil)

func (k *taskLogsTask) Open(_ context.Context, _ *features.OpenRequest, resp *features.OpenResponse) error {
	resp.LogSinks = append(resp.LogSinks, k.buf)
	return nil
}

// taskContainers lists the containers, stopped ones included, that the
// worker labelled with taskID, as "<id> <state>".
func taskContainers(t *testing.T, taskID string) []string {
	t.Helper()
	api, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer api.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	res, err := api.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: client.Filters{}.Add("label", "dev.dockerworker.task-id="+taskID),
	})
	if err != nil {
		t.Fatalf("list containers: %v", err)
	}
	var out []string
	for _, c := range res.Items {
		out = append(out, c.ID[:12]+" "+string(c.State))
	}
	return out
}
