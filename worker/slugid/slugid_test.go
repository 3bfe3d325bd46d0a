package slugid

import "testing"

func TestNice(t *testing.T) {
	seen := map[string]bool{}
	for range 2000 {
		s := Nice()
		if len(s) != 22 {
			t.Fatalf("len(%q) = %d, want 22", s, len(s))
		}
		if s[0] == '-' {
			t.Fatalf("%q starts with '-'", s)
		}
		if !Valid(s) {
			t.Fatalf("Valid(%q) = false", s)
		}
		if seen[s] {
			t.Fatalf("duplicate %q", s)
		}
		seen[s] = true
	}
}

func TestValid(t *testing.T) {
	for _, s := range []string{"", "abc", "PI-jmdZ5SO2fYPC_oh3gY!", "PI-jmdZ5SO2fYPC_oh3gYgX"} {
		if Valid(s) {
			t.Errorf("Valid(%q) = true, want false", s)
		}
	}
	if !Valid("PI-jmdZ5SO2fYPC_oh3gYg") {
		t.Errorf("a real taskId is not valid")
	}
}
