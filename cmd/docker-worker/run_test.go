package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.dockerworker.dev/docker-worker/worker"
)

// run's exit code tells an operator's supervisor why the worker stopped:
// rejected credentials have a code of their own, since restarting with the
// same credentials cannot help.
func TestRunExitCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{errors.New("start feature x: boom"), 1},
		{fmt.Errorf("%w: claimWork was refused 3 times in a row, last: 401", worker.ErrCredentialsRejected), 3},
	} {
		if got := runExitCode(tc.err); got != tc.want {
			t.Errorf("runExitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
	code, out, _ := runCLI(t, "run", "--help")
	if code != 0 || !strings.Contains(out, "exit codes:") || !strings.Contains(out, "3  the queue rejects the worker's credentials") {
		t.Errorf("run --help: exit %d, output lacks the exit codes:\n%s", code, out)
	}
}
