package tc

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

// The example from the Hawk specification, quoted in taskcluster-protocol.md.
func TestHawkSpecificationExample(t *testing.T) {
	a := HawkArtifacts{
		ID: "dh37fgj492je", TS: 1353832234, Nonce: "j4h3g2", Method: "GET",
		Resource: "/resource/1?b=1&a=2", Host: "example.com", Port: 8000, Ext: "some-app-ext-data",
	}
	if got, want := a.MAC("werxhqb98rpaxn39848xrunpaw3489ruxnpa98w4rxn"), "6R4rV5iE+NPoym+WwjeHzjAGXUtLNIxmo1vpMofpLAE="; got != want {
		t.Fatalf("MAC = %s, want %s", got, want)
	}
}

func TestHawkExtOmittedWithoutCertificateOrScopes(t *testing.T) {
	u, _ := url.Parse("https://tc.example.com/api/queue/v1/ping")
	h, err := SignRequest(Credentials{ClientID: "c", AccessToken: "t"}, "GET", u, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(h, "ext=") {
		t.Fatalf("header %q has ext", h)
	}
}
