package taskdoc

import (
	"testing"
	"time"
)

func TestComplete(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	d := Defaults{ProvisionerID: "p", WorkerType: "w", Metadata: map[string]string{"name": "n", "owner": "o@localhost"}}

	id, task := Complete(map[string]any{"image": "busybox"}, d, now)
	if len(id) != 22 {
		t.Errorf("generated id %q is not a slugid", id)
	}
	if p, _ := task["payload"].(map[string]any); p["image"] != "busybox" {
		t.Errorf("bare payload not wrapped: %v", task)
	}
	if task["provisionerId"] != "p" || task["workerType"] != "w" {
		t.Errorf("pool = %v/%v, want p/w", task["provisionerId"], task["workerType"])
	}
	if task["created"] != "2026-12-01T10:00:00.000Z" || task["deadline"] != "2026-12-01T11:00:00.000Z" || task["expires"] != "2026-12-08T10:00:00.000Z" {
		t.Errorf("dates = %v %v %v", task["created"], task["deadline"], task["expires"])
	}
	if m, _ := task["metadata"].(map[string]any); m["name"] != "n" || m["owner"] != "o@localhost" {
		t.Errorf("metadata = %v", task["metadata"])
	}

	id, task = Complete(map[string]any{
		"taskId": "keep", "taskQueueId": "a/b", "payload": map[string]any{},
		"deadline": "x", "metadata": map[string]any{"name": "mine"},
	}, d, now)
	if id != "keep" {
		t.Errorf("id = %q, want keep", id)
	}
	if _, ok := task["taskId"]; ok {
		t.Error("taskId left in the definition")
	}
	if _, ok := task["provisionerId"]; ok {
		t.Error("provisionerId added beside a taskQueueId")
	}
	if task["deadline"] != "x" {
		t.Errorf("deadline overwritten: %v", task["deadline"])
	}
	if m, _ := task["metadata"].(map[string]any); m["name"] != "mine" || m["owner"] != "o@localhost" {
		t.Errorf("metadata = %v, want the given name kept and the owner added", m)
	}
}
