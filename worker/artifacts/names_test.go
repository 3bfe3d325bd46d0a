package artifacts

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckArtifactName(t *testing.T) {
	for _, name := range []string{"public/a.txt", "a", " ", "~", "public/dir/", "/public/x", "private/a b/c!$%&'()*+,;=@[]^`{|}"} {
		if err := CheckArtifactName(name); err != nil {
			t.Errorf("CheckArtifactName(%q) = %v, want nil", name, err)
		}
	}
	for _, tc := range []struct{ name, want string }{
		{"", "it is empty"},
		{"public/a\x00b", `"\x00" at byte 8 is not printable ASCII`},
		{"public/\n", `"\n" at byte 7`},
		{"public/\x7f", `"\x7f" at byte 7`},
		{"public/caf\u00e9.txt", `"é" at byte 10`},
		{"public/\xff", `"\xff" at byte 7`},
		{"\t", `"\t" at byte 0`},
	} {
		err := CheckArtifactName(tc.name)
		if err == nil || !errors.Is(err, ErrBadArtifactName) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckArtifactName(%q) = %v, want ErrBadArtifactName containing %q", tc.name, err, tc.want)
		}
	}
}
