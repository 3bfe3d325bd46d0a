package capabilities

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"go.dockerworker.dev/docker-worker/features"
	"go.dockerworker.dev/docker-worker/features/featuretest"
	"go.dockerworker.dev/docker-worker/schemas"
)

func TestPrivileged(t *testing.T) {
	info := features.WorkerInfo{ProvisionerID: "p", WorkerType: "w"}
	privScopes := []features.ScopeRequirement{{
		AnyOf:   []string{"docker-worker:capability:privileged", "docker-worker:capability:privileged:p/w"},
		Message: "Insufficient scopes to run task in privileged mode. Try adding docker-worker:capability:privileged:p/w to the .scopes array",
	}}
	for _, tc := range []struct {
		name       string
		caps       *schemas.Capabilities
		allow      bool
		wantScopes []features.ScopeRequirement
		wantErr    string
		wantPriv   bool
	}{
		{name: "no capabilities", allow: true},
		{name: "not privileged", caps: &schemas.Capabilities{}, allow: false},
		{name: "privileged and allowed", caps: &schemas.Capabilities{Privileged: true}, allow: true, wantPriv: true, wantScopes: privScopes},
		{name: "privileged, worker refuses", caps: &schemas.Capabilities{Privileged: true}, allow: false, wantScopes: privScopes,
			wantErr: "Cannot run task using docker privileged mode.  Worker must be enabled to allow running of privileged tasks."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ft := &featuretest.Task{Info: info, Pay: &schemas.Payload{Capabilities: tc.caps}}
			tf, err := New(Config{AllowPrivileged: tc.allow}).NewTask(ft)
			if err != nil {
				t.Fatal(err)
			}
			k := tf.(*task)
			if diff := cmp.Diff(tc.wantScopes, k.RequiredScopes()); diff != "" {
				t.Errorf("scopes (-want +got):\n%s", diff)
			}
			var resp features.PrepareResponse
			err = k.Prepare(t.Context(), &features.PrepareRequest{}, &resp)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Prepare: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Prepare error %v, want %q", err, tc.wantErr)
			}
			if resp.Privileged != tc.wantPriv {
				t.Errorf("Privileged = %v, want %v", resp.Privileged, tc.wantPriv)
			}
		})
	}
}

// Before validation (always-on features are created then) the payload is
// nil: nothing is required and nothing contributed.
func TestNilPayload(t *testing.T) {
	tf, _ := New(Config{}).NewTask(&featuretest.Task{})
	if got := tf.(*task).RequiredScopes(); got != nil {
		t.Errorf("RequiredScopes = %v", got)
	}
}
