package apischema

import (
	"strings"
	"testing"
)

const validStatus = `{"status": {
  "taskId": "PI-jmdZ5SO2fYPC_oh3gYg", "provisionerId": "prov", "workerType": "wt",
  "taskQueueId": "prov/wt", "schedulerId": "-", "projectId": "none",
  "taskGroupId": "PI-jmdZ5SO2fYPC_oh3gYg", "priority": "lowest",
  "deadline": "2026-11-22T04:49:59.772Z", "expires": "2027-11-22T04:49:59.772Z",
  "retriesLeft": 5, "state": "pending",
  "runs": [{"runId": 0, "state": "pending", "reasonCreated": "scheduled", "scheduled": "2026-11-22T03:49:59.811Z"}]
}}`

func TestValidate(t *testing.T) {
	s := Open(t)
	for _, id := range []string{
		"queue/v1/task-status-response.json",
		"/schemas/queue/v1/task-status-response.json#",
		"schemas/queue/v1/task-status-response.json",
	} {
		if err := s.Validate(id, []byte(validStatus)); err != nil {
			t.Errorf("Validate(%q, valid) = %v, want nil", id, err)
		}
	}
	for name, doc := range map[string]string{
		"extra property": strings.Replace(validStatus, `"retriesLeft": 5`, `"retriesLeft": 5, "bogus": 1`, 1),
		"missing runs": strings.Replace(validStatus, `"state": "pending",
  "runs"`, `"state": "pending", "nope"`, 1),
		"bad date-time": strings.Replace(validStatus, "2026-11-22T04:49:59.772Z", "yesterday", 1),
		"bad enum":      strings.Replace(validStatus, `"reasonCreated": "scheduled"`, `"reasonCreated": "whim"`, 1),
		"not JSON":      "{",
	} {
		if err := s.Validate("queue/v1/task-status-response.json", []byte(doc)); err == nil {
			t.Errorf("Validate(%s) = nil, want an error", name)
		}
	}
}

func TestValidateUnknownSchema(t *testing.T) {
	s := Open(t)
	if err := s.Validate("queue/v1/no-such-schema.json", []byte(`{}`)); err == nil {
		t.Fatal("Validate(unknown schema) = nil, want an error")
	}
}

func TestValidateRequestSchema(t *testing.T) {
	s := Open(t)
	ok := `{"tasks": 1, "workerGroup": "wg", "workerId": "w1"}`
	if err := s.Validate("queue/v1/claim-work-request.json", []byte(ok)); err != nil {
		t.Errorf("valid claim-work request: %v", err)
	}
	if err := s.Validate("queue/v1/claim-work-request.json", []byte(`{"tasks": 33, "workerGroup": "wg", "workerId": "w1"}`)); err == nil {
		t.Error("claim-work request with tasks=33 validated")
	}
}

func TestNormalizeID(t *testing.T) {
	for in, want := range map[string]string{
		"/schemas/queue/v1/task.json#": "queue/v1/task.json",
		"queue/v1/task.json":           "queue/v1/task.json",
		"schemas/queue/v1/task.json#":  "queue/v1/task.json",
	} {
		if got := normalizeID(in); got != want {
			t.Errorf("normalizeID(%q) = %q, want %q", in, got, want)
		}
	}
}
