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
