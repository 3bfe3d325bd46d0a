package dockertest

import (
	"bufio"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestNamesMatchSetupScript keeps the constants in step with the file
// test/setup-env.sh reads.
func TestNamesMatchSetupScript(t *testing.T) {
	f, err := os.Open("../../../test/fixtures/busybox/image.env")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := map[string]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("bad line %q", line)
		}
		got[k] = v
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"TEST_IMAGE":              Image,
		"TEST_REGISTRY":           Registry,
		"TEST_REGISTRY_IMAGE":     RegistryImage,
		"TEST_REGISTRY_IMAGE_E2E": RegistryImageE2E,
		"TEST_PRIVATE_REGISTRY":   PrivateRegistry,
		"TEST_PRIVATE_IMAGE":      PrivateImage,
		"TEST_PRIVATE_USER":       PrivateUser,
		"TEST_PRIVATE_PASSWORD":   PrivatePassword,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("image.env differs from the constants (-want +got):\n%s", diff)
	}
}
