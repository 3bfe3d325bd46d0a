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

func TestDisableSeccomp(t *testing.T) {
	info := features.WorkerInfo{ProvisionerID: "p", WorkerType: "w"}
	seccompScopes := []features.ScopeRequirement{{
		AnyOf:   []string{"docker-worker:capability:disableSeccomp", "docker-worker:capability:disableSeccomp:p/w"},
		Message: "Insufficient scopes to run task without seccomp. Try adding docker-worker:capability:disableSeccomp:p/w to the .scopes array",
	}}
	for _, tc := range []struct {
		name       string
		caps       *schemas.Capabilities
		cfg        Config
		wantScopes []features.ScopeRequirement
		wantErr    string
		wantOpt    []string
	}{
		{name: "not asked", caps: &schemas.Capabilities{}, cfg: Config{AllowDisableSeccomp: true}},
		{name: "allowed", caps: &schemas.Capabilities{DisableSeccomp: true}, cfg: Config{AllowDisableSeccomp: true},
			wantScopes: seccompScopes, wantOpt: []string{"seccomp=unconfined"}},
		{name: "worker refuses", caps: &schemas.Capabilities{DisableSeccomp: true}, cfg: Config{AllowPrivileged: true},
			wantScopes: seccompScopes, wantErr: "Cannot run task using docker without a seccomp profile.  Worker must be enabled"},
		{name: "with privileged, both refused", caps: &schemas.Capabilities{DisableSeccomp: true, Privileged: true},
			wantScopes: append([]features.ScopeRequirement{{
				AnyOf:   []string{"docker-worker:capability:privileged", "docker-worker:capability:privileged:p/w"},
				Message: "Insufficient scopes to run task in privileged mode. Try adding docker-worker:capability:privileged:p/w to the .scopes array",
			}}, seccompScopes...),
			wantErr: "Cannot run task using docker privileged mode.  Worker must be enabled to allow running of privileged tasks.\nCannot run task using docker without a seccomp profile."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ft := &featuretest.Task{Info: info, Pay: &schemas.Payload{Capabilities: tc.caps}}
			tf, err := New(tc.cfg).NewTask(ft)
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
			if diff := cmp.Diff(tc.wantOpt, resp.SecurityOpt); diff != "" {
				t.Errorf("SecurityOpt (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOwns(t *testing.T) {
	want := []string{"capabilities.privileged", "capabilities.disableSeccomp"}
	if diff := cmp.Diff(want, New(Config{}).Owns()); diff != "" {
		t.Errorf("Owns (-want +got):\n%s", diff)
	}
}
