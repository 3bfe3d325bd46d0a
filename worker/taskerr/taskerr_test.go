package taskerr

import (
	"errors"
	"fmt"
	"testing"
)

func TestClassify(t *testing.T) {
	plain := errors.New("boom")
	for _, tc := range []struct {
		name string
		err  error
		want Kind
	}{
		{"nil", nil, Failed},
		{"plain", plain, Failed},
		{"malformed", MalformedPayload(plain), MalformedPayloadKind},
		{"wrapped", fmt.Errorf("prepare: %w", InternalError(plain)), InternalErrorKind},
		{"joined picks highest", errors.Join(MalformedPayload(plain), plain, WorkerShutdown(plain)), WorkerShutdownKind},
		{"canceled beats shutdown", errors.Join(WorkerShutdown(plain), Canceled(plain)), CanceledKind},
		{"nested join", fmt.Errorf("x: %w", errors.Join(plain, fmt.Errorf("y: %w", ResourceUnavailable(plain)))), ResourceUnavailableKind},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(tc.err); got != tc.want {
				t.Errorf("Classify = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestReasons(t *testing.T) {
	want := map[Kind]string{Failed: "", MalformedPayloadKind: "malformed-payload", ResourceUnavailableKind: "resource-unavailable",
		InternalErrorKind: "internal-error", WorkerShutdownKind: "worker-shutdown", CanceledKind: ""}
	for k, r := range want {
		if k.Reason() != r {
			t.Errorf("%v.Reason() = %q, want %q", k, k.Reason(), r)
		}
	}
	if MalformedPayload(nil) != nil {
		t.Error("MalformedPayload(nil) != nil")
	}
}

// fault is an error of what the worker runs on, as the Docker client's
// daemon errors are.
type fault struct {
	err error
	is  bool
}

func (f *fault) Error() string     { return f.err.Error() }
func (f *fault) Unwrap() error     { return f.err }
func (f *fault) WorkerFault() bool { return f.is }

func TestWorkerFaults(t *testing.T) {
	plain := errors.New("boom")
	daemon := &fault{err: errors.New("connection refused"), is: true}
	for _, tc := range []struct {
		name      string
		err       error
		want      Kind
		wantFault error
	}{
		{"alone", daemon, WorkerShutdownKind, daemon},
		{"wrapped", fmt.Errorf("wait for container: %w", daemon), WorkerShutdownKind, daemon},
		{"beats internal error", errors.Join(InternalError(plain), fmt.Errorf("x: %w", daemon)), WorkerShutdownKind, daemon},
		{"inside a marked error", ResourceUnavailable(fmt.Errorf("pull: %w", daemon)), WorkerShutdownKind, daemon},
		{"canceled still wins", errors.Join(Canceled(plain), daemon), CanceledKind, daemon},
		{"a method answering false is no fault", &fault{err: plain}, Failed, nil},
		{"plain", plain, Failed, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(tc.err); got != tc.want {
				t.Errorf("Classify = %v, want %v", got, tc.want)
			}
			if got := Fault(tc.err); got != tc.wantFault {
				t.Errorf("Fault = %v, want %v", got, tc.wantFault)
			}
		})
	}
}
