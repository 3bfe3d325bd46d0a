package scopes

import "testing"

func TestSatisfied(t *testing.T) {
	have := []string{"queue:get-task:*", "docker-worker:cache:exact", "*-suffix"}
	for _, c := range []struct {
		scope string
		want  bool
	}{
		{"queue:get-task:abc", true},
		{"queue:get-task:", true},
		{"queue:get-tas", false},
		{"docker-worker:cache:exact", true},
		{"docker-worker:cache:exactly", false},
		{"x-suffix", false},
		{"*-suffix", true},
	} {
		if got := Satisfied(have, c.scope); got != c.want {
			t.Errorf("Satisfied(%q) = %v, want %v", c.scope, got, c.want)
		}
	}
	if !Satisfied([]string{"*"}, "anything") || Satisfied(nil, "x") {
		t.Error("star / empty")
	}
	if !AllSatisfied(have, []string{"queue:get-task:a", "docker-worker:cache:exact"}) || AllSatisfied(have, []string{"queue:get-task:a", "nope"}) {
		t.Error("AllSatisfied")
	}
	if !AllSatisfied(nil, nil) {
		t.Error("nothing wanted is satisfied")
	}
}
