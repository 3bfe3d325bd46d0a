package server

import (
	"net/http"
	"net/url"
	"strings"
)

// Handler serves api (the queue's handler, which expects full paths) under
// <rootURL path>/api/ and ui (the web page) at the rest of the root URL's
// path, with that path stripped.
func Handler(rootURL string, api, ui http.Handler) http.Handler {
	base := ""
	if u, err := url.Parse(strings.TrimSuffix(rootURL, "/")); err == nil {
		base = u.EscapedPath()
	}
	stripped := http.StripPrefix(base, ui)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.EscapedPath()
		switch {
		case strings.HasPrefix(p, base+"/api/"):
			api.ServeHTTP(w, r)
		case p == base && base != "":
			http.Redirect(w, r, base+"/", http.StatusMovedPermanently)
		case strings.HasPrefix(p, base+"/"):
			stripped.ServeHTTP(w, r)
		default:
			http.NotFound(w, r)
		}
	})
}
