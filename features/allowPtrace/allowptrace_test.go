package allowptrace

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/features/featuretest"
	"go.dockerworker.dev/docker-worker/schemas"
)

func TestAllowPtrace(t *testing.T) {
	tf, err := New().NewTask(&featuretest.Task{Pay: &schemas.Payload{Features: map[string]bool{Name: true}}})
	if err != nil {
		t.Fatal(err)
	}
	want := []features.ScopeRequirement{{
		AnyOf:   []string{"docker-worker:feature:allowPtrace"},
		Message: "Insufficient scopes to use 'allowPtrace' feature.  Try adding docker-worker:feature:allowPtrace to the .scopes array.",
	}}
	if diff := cmp.Diff(want, tf.(features.ScopeRequirer).RequiredScopes()); diff != "" {
		t.Errorf("scopes (-want +got):\n%s", diff)
	}
	var resp features.PrepareResponse
	if err := tf.(features.Preparer).Prepare(t.Context(), &features.PrepareRequest{}, &resp); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"SYS_PTRACE"}, resp.CapAdd); diff != "" {
		t.Errorf("CapAdd (-want +got):\n%s", diff)
	}
}
