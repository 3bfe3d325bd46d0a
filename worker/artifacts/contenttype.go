package artifacts

import "strings"

// DefaultContentType is the content type of files whose extension is unknown.
const DefaultContentType = "application/octet-stream"

// contentTypes maps lower-case extensions to the content types docker-worker
// gave them (it used the `mime` npm package, version 2, over mime-db). The
// table is deliberately fixed rather than read from the host's mime.types,
// so that an artifact gets the same type on every machine.
var contentTypes = map[string]string{
	// text
	"txt": "text/plain", "text": "text/plain", "log": "text/plain", "conf": "text/plain",
	"def": "text/plain", "list": "text/plain", "in": "text/plain", "ini": "text/plain",
	"html": "text/html", "htm": "text/html", "shtml": "text/html",
	"css": "text/css", "csv": "text/csv",
	"md": "text/markdown", "markdown": "text/markdown",
	"yaml": "text/yaml", "yml": "text/yaml",
	"xml": "application/xml", "xsl": "application/xml",
	"js": "application/javascript", "mjs": "application/javascript",
	"json": "application/json", "map": "application/json",
	"sh": "application/x-sh",
	// images
	"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "jpe": "image/jpeg",
	"gif": "image/gif", "svg": "image/svg+xml", "svgz": "image/svg+xml",
	"webp": "image/webp", "bmp": "image/bmp", "tif": "image/tiff", "tiff": "image/tiff",
	// documents, fonts, media
	"pdf": "application/pdf", "wasm": "application/wasm",
	"woff": "font/woff", "woff2": "font/woff2", "ttf": "font/ttf", "otf": "font/otf",
	"mp4": "video/mp4", "webm": "video/webm", "ogg": "audio/ogg",
	"flv": "video/x-flv", "swf": "application/x-shockwave-flash",
	// archives and packages
	"zip": "application/zip", "gz": "application/gzip", "tar": "application/x-tar",
	"bz2": "application/x-bzip2", "xz": "application/x-xz", "7z": "application/x-7z-compressed",
	"jar": "application/java-archive", "apk": "application/vnd.android.package-archive",
	"dmg": "application/x-apple-diskimage", "deb": "application/x-debian-package",
	"rpm": "application/x-redhat-package-manager",
}

// ContentType returns the content type for an archive entry name, as
// docker-worker computed it: the text after the last '.' of the last path
// element, lower-cased, looked up in a fixed table; a bare name with
// neither a directory nor a dot is itself looked up as an extension
// (docker-worker's quirk: an entry named "json" is application/json).
// Unknown extensions give [DefaultContentType].
func ContentType(name string) string {
	last := name
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		last = name[i+1:]
	}
	hasPath := len(last) < len(name)
	last = strings.ToLower(last)
	ext := last
	if i := strings.LastIndexByte(last, '.'); i >= 0 {
		ext = last[i+1:]
	}
	hasDot := len(ext) < len(last)-1
	if hasDot || !hasPath {
		if t, ok := contentTypes[ext]; ok {
			return t
		}
	}
	return DefaultContentType
}

// DefaultSkipCompression is docker-worker's artifacts.skipCompressionExtensions
// default, including its 'lz4' without a dot.
var DefaultSkipCompression = []string{
	".7z", ".bz2", ".deb", ".dmg", ".flv", ".gif", ".gz", ".jpeg", ".jpg", ".png", ".swf",
	".tbz", ".tgz", ".webp", ".whl", ".woff", ".woff2", ".xz", ".zip", ".zst", "lz4",
}

// Compress reports whether an entry called name is gzip-encoded for
// upload: not when the name ends with one of the skip suffixes (a plain,
// case-sensitive suffix match, as docker-worker did).
func Compress(name string, skip []string) bool {
	for _, s := range skip {
		if s != "" && strings.HasSuffix(name, s) {
			return false
		}
	}
	return true
}
