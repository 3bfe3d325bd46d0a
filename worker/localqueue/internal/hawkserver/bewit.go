package hawkserver

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// A bewit is Hawk's signed URL: the query parameter `bewit` holds, in
// base64url without padding, `<id>\<expiry seconds>\<mac>\<ext>`, where
// the MAC covers (as `hawk.1.bewit`) the expiry as timestamp, no nonce, the
// method, the URL without its bewit, the host and the port. Taskcluster
// services answer with such URLs where a redirect must carry the caller's
// authority, e.g. the index's findArtifactFromTask to a private artifact.

// bewitPattern splits a request URI around its bewit parameter, as Hawk
// does: path, separator, bewit, the parameters after it.
var bewitPattern = regexp.MustCompile(`^(/.*)([?&])bewit=([^&]*)(?:&(.+))?$`)

// Bewit is a parsed bewit with the resource it was made for.
type Bewit struct {
	ID     string
	Expiry time.Time
	Ext    string
	// Resource is the request URI without the bewit.
	Resource string
	mac      string
}

// bewitMAC is the bewit MAC of a GET or HEAD of resource on host:port.
func bewitMAC(key string, expiry int64, method, resource, host string, port int, ext string) string {
	m := hmac.New(sha256.New, []byte(key))
	for _, s := range []string{"hawk.1.bewit", strconv.FormatInt(expiry, 10), "", strings.ToUpper(method), resource, strings.ToLower(host), strconv.Itoa(port), "", ext} {
		m.Write([]byte(s + "\n"))
	}
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// SignURL returns rawURL with a bewit of clientID (signed with key) that
// lets it be fetched (GET) until expiry.
func SignURL(rawURL, clientID, key string, expiry time.Time) (string, error) {
	u, err := parseURL(rawURL)
	if err != nil {
		return "", err
	}
	host, port, err := SplitHostPort(u.Host, u.Scheme == "https")
	if err != nil {
		return "", err
	}
	exp := expiry.Unix()
	mac := bewitMAC(key, exp, "GET", u.RequestURI(), host, port, "")
	bewit := base64.RawURLEncoding.EncodeToString([]byte(clientID + `\` + strconv.FormatInt(exp, 10) + `\` + mac + `\`))
	sep := "?"
	if u.RawQuery != "" {
		sep = "&"
	}
	return rawURL + sep + "bewit=" + bewit, nil
}

// ParseBewit finds the bewit of requestURI; ok is false when it has none.
func ParseBewit(requestURI string) (b Bewit, ok bool, err error) {
	m := bewitPattern.FindStringSubmatch(requestURI)
	if m == nil {
		return b, false, nil
	}
	b.Resource = m[1]
	if m[4] != "" {
		b.Resource += m[2] + m[4]
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(m[3], "="))
	if err != nil {
		return b, true, fmt.Errorf("bewit is not base64url: %w", err)
	}
	parts := strings.Split(string(raw), `\`)
	if len(parts) != 4 || parts[0] == "" || parts[2] == "" {
		return b, true, errors.New("malformed bewit")
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return b, true, fmt.Errorf("bad bewit expiry: %w", err)
	}
	b.ID, b.Expiry, b.mac, b.Ext = parts[0], time.Unix(exp, 0), parts[2], parts[3]
	return b, true, nil
}

// Valid reports whether the bewit's MAC, made with key, fits a request of
// method on host:port.
func (b Bewit) Valid(key, method, host string, port int) bool {
	want := bewitMAC(key, b.Expiry.Unix(), method, b.Resource, host, port, b.Ext)
	return hmac.Equal([]byte(want), []byte(b.mac))
}

func parseURL(rawURL string) (*url.URL, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("sign URL: %w", err)
	}
	if u.Host == "" || u.Fragment != "" {
		return nil, fmt.Errorf("sign URL %q: not an absolute URL without fragment", rawURL)
	}
	return u, nil
}
