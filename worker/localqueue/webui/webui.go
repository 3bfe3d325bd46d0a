package webui

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.dockerworker.dev/docker-worker/schemas"
	"go.dockerworker.dev/docker-worker/worker/localqueue"
	"go.dockerworker.dev/docker-worker/worker/slugid"
	"go.dockerworker.dev/docker-worker/worker/tc"
)

//go:embed assets
var assets embed.FS

// Default pool of the tasks submitted as a bare payload or without a
// provisionerId/workerType or taskQueueId: the pool `docker-worker dev`
// runs.
const (
	DefaultProvisionerID = "local"
	DefaultWorkerType    = "docker"
)

// signLifetime is how long a URL signed by the admin signing endpoint
// stays valid.
const signLifetime = 15 * time.Minute

// maxRequestBody bounds the bodies of the /ui/api/ endpoints (a submitted
// task document, a URL to sign).
const maxRequestBody = 1 << 20

// TaskLister lists the queue's tasks; [*localqueue.Queue] is one.
type TaskLister interface {
	ListTasks(ctx context.Context, f localqueue.TaskFilter) ([]localqueue.TaskSummary, int, error)
}

// Config configures the UI.
type Config struct {
	// RootURL is the queue's root URL; the UI is served at its path.
	RootURL string
	// Tasks lists the tasks for the task list.
	Tasks TaskLister
	// Admin, when set, enables POST /ui/api/sign, which signs requests
	// and URLs with these credentials for any page of the same origin:
	// whoever can load the page acts as this client. Leave it nil unless
	// the queue listens where only its owner reaches it.
	Admin *tc.Credentials
	// ProvisionerID and WorkerType fill in the pool of submitted tasks
	// that name none (defaults [DefaultProvisionerID] and
	// [DefaultWorkerType]).
	ProvisionerID, WorkerType string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives the UI's log; nil discards it.
	Logger *slog.Logger
}

// UI serves the pages and the /ui/api/ endpoints. Mount it at the root
// URL's path with that path stripped (the queue API under /api/ is served
// by the queue itself).
type UI struct {
	cfg       Config
	base      string // the root URL's path, without trailing slash
	host      string // the root URL's host[:port]
	files     fs.FS
	validator *schemas.Validator
	mux       *http.ServeMux
	terminal  bool
}

// New returns the UI; it fails only when the payload schema does not
// compile or RootURL is not a URL.
func New(cfg Config) (*UI, error) {
	root, err := url.Parse(strings.TrimSuffix(cfg.RootURL, "/"))
	if err != nil || root.Host == "" {
		return nil, fmt.Errorf("webui: root URL %q is not an absolute URL", cfg.RootURL)
	}
	if cfg.ProvisionerID == "" {
		cfg.ProvisionerID = DefaultProvisionerID
	}
	if cfg.WorkerType == "" {
		cfg.WorkerType = DefaultWorkerType
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	v, err := schemas.NewValidator()
	if err != nil {
		return nil, fmt.Errorf("webui: %w", err)
	}
	files, err := fs.Sub(assets, "assets")
	if err != nil {
		return nil, fmt.Errorf("webui: %w", err)
	}
	u := &UI{cfg: cfg, base: root.EscapedPath(), host: root.Host, files: files, validator: v, mux: http.NewServeMux()}
	_, statErr := fs.Stat(files, "vendor/xterm.js")
	u.terminal = statErr == nil
	u.mux.HandleFunc("GET /{$}", u.page("list.html"))
	u.mux.HandleFunc("GET /tasks/{taskId}", u.page("task.html"))
	u.mux.HandleFunc("GET /submit", u.page("submit.html"))
	u.mux.HandleFunc("GET /shell/{$}", u.page("shell.html"))
	u.mux.Handle("GET /ui/static/", u.static())
	u.mux.HandleFunc("GET /ui/api/config", u.serveConfig)
	u.mux.HandleFunc("GET /ui/api/tasks", u.serveTasks)
	u.mux.HandleFunc("POST /ui/api/validate", u.sameOrigin(u.serveValidate))
	u.mux.HandleFunc("POST /ui/api/sign", u.sameOrigin(u.serveSign))
	return u, nil
}

// TerminalBuilt reports whether the xterm terminal emulator is embedded
// (`make ui` copies it in before the Go build); without it the shell page
// offers a line-mode fallback.
func (u *UI) TerminalBuilt() bool { return u.terminal }

// ServeHTTP serves the UI.
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w)
	u.mux.ServeHTTP(w, r)
}

// contentSecurityPolicy allows the page's own scripts and styles only (no
// inline script, so task text that reached the page as markup could not
// run), fetches and websockets anywhere (the live log and the interactive
// shell are served by the worker, on other ports), and no framing.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
	"connect-src 'self' http: https: ws: wss:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"

func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	// Signed URLs (bewits) must not leak to the sites a page links to.
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
}

// page serves one of the HTML pages, with the root URL's path filled in
// where the page names its own assets.
func (u *UI) page(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := fs.ReadFile(u.files, name)
		if err != nil {
			u.cfg.Logger.Error("webui: embedded page missing", "page", name, "error", err)
			http.Error(w, "page missing", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, strings.ReplaceAll(string(b), "{{base}}", htmlAttr(u.base)))
	}
}

// htmlAttr escapes s for a double-quoted HTML attribute.
func htmlAttr(s string) string {
	return strings.NewReplacer(`&`, "&amp;", `"`, "&quot;", `<`, "&lt;", `>`, "&gt;").Replace(s)
}

func (u *UI) static() http.Handler {
	files := http.StripPrefix("/ui/static/", http.FileServerFS(u.files))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") || strings.HasSuffix(r.URL.Path, ".html") {
			http.NotFound(w, r) // no listings; pages have their own routes
			return
		}
		files.ServeHTTP(w, r)
	})
}

// sameOrigin refuses a request that a page of another origin made (CSRF):
// by the browser's Sec-Fetch-Site, else by Origin against the Host the
// request was sent to. It also insists on a JSON body, which a
// cross-origin form cannot send without a preflight this server never
// answers.
func (u *UI) sameOrigin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
			writeJSONError(w, http.StatusForbidden, "cross-origin request refused (Sec-Fetch-Site: "+site+")")
			return
		}
		if origin := r.Header.Get("Origin"); origin != "" {
			o, err := url.Parse(origin)
			if err != nil || o.Host != r.Host {
				writeJSONError(w, http.StatusForbidden, "cross-origin request refused (Origin: "+origin+")")
				return
			}
		}
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			writeJSONError(w, http.StatusUnsupportedMediaType, "the body must be application/json")
			return
		}
		h(w, r)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"message":"encoding the answer failed"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeJSONError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"message": msg})
}

// configJSON is GET /ui/api/config: what the pages need to know of the
// server.
type configJSON struct {
	RootURL string `json:"rootUrl"`
	// AdminSigning: POST /ui/api/sign signs for the admin client.
	AdminSigning bool   `json:"adminSigning"`
	AdminClient  string `json:"adminClientId,omitempty"`
	// Terminal: the xterm terminal emulator is embedded.
	Terminal      bool   `json:"terminal"`
	ProvisionerID string `json:"provisionerId"`
	WorkerType    string `json:"workerType"`
}

func (u *UI) serveConfig(w http.ResponseWriter, r *http.Request) {
	c := configJSON{RootURL: u.cfg.RootURL, Terminal: u.terminal, ProvisionerID: u.cfg.ProvisionerID, WorkerType: u.cfg.WorkerType}
	if u.cfg.Admin != nil {
		c.AdminSigning, c.AdminClient = true, u.cfg.Admin.ClientID
	}
	writeJSON(w, http.StatusOK, c)
}

// taskStates are the states a task can be in, for the list's filter.
var taskStates = []string{"unscheduled", "pending", "running", "completed", "failed", "exception"}

// defaultListLimit and maxListLimit bound GET /ui/api/tasks.
const (
	defaultListLimit = 200
	maxListLimit     = 1000
)

type tasksJSON struct {
	Tasks []localqueue.TaskSummary `json:"tasks"`
	// Total is how many tasks passed the filter (Tasks is cut at limit).
	Total int `json:"total"`
}

// serveTasks is GET /ui/api/tasks?state=&taskGroupId=&limit=: the tasks,
// newest first. It shows what the anonymous scopes show of every task
// anyway (queue:get-task:* and queue:status:* by default).
func (u *UI) serveTasks(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := localqueue.TaskFilter{State: q.Get("state"), TaskGroupID: q.Get("taskGroupId"), Limit: defaultListLimit}
	if f.State != "" && !contains(taskStates, f.State) {
		writeJSONError(w, http.StatusBadRequest, fmt.Sprintf("state %q is not one of %s", f.State, strings.Join(taskStates, ", ")))
		return
	}
	if f.TaskGroupID != "" && !slugid.Valid(f.TaskGroupID) {
		writeJSONError(w, http.StatusBadRequest, fmt.Sprintf("taskGroupId %q is not a slug id", f.TaskGroupID))
		return
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxListLimit {
			writeJSONError(w, http.StatusBadRequest, fmt.Sprintf("limit %q is not a number from 1 to %d", s, maxListLimit))
			return
		}
		f.Limit = n
	}
	tasks, total, err := u.cfg.Tasks.ListTasks(r.Context(), f)
	if err != nil {
		u.cfg.Logger.Error("webui: list tasks", "error", err)
		writeJSONError(w, http.StatusInternalServerError, "listing the tasks failed")
		return
	}
	writeJSON(w, http.StatusOK, tasksJSON{Tasks: tasks, Total: total})
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// errBadRequest marks errors that are the client's fault.
var errBadRequest = errors.New("bad request")

func readJSON(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: the body is not the expected JSON object: %w", errBadRequest, err)
	}
	return nil
}
