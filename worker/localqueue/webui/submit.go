package webui

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.dockerworker.dev/docker-worker/schemas"
	"go.dockerworker.dev/docker-worker/worker/slugid"
	"go.dockerworker.dev/docker-worker/worker/taskdoc"
	"go.dockerworker.dev/docker-worker/worker/tc"
	"go.dockerworker.dev/docker-worker/worker/tcproxy"
	"go.yaml.in/yaml/v3"
)

// validateRequest is the body of POST /ui/api/validate.
type validateRequest struct {
	// Text is the document: a task definition (it has a payload) or a bare
	// payload, in YAML or JSON.
	Text string `json:"text"`
	// Name names the document (an uploaded file's name) in the task's
	// metadata when it has none.
	Name string `json:"name,omitempty"`
}

// problemJSON is one problem of the document, at a path such as
// `payload.image` or `task` (the document as a whole).
type problemJSON struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

// validateResponse is the answer of POST /ui/api/validate. With no
// problems, Task is the complete task definition to create under TaskID.
type validateResponse struct {
	TaskID   string         `json:"taskId,omitempty"`
	Task     map[string]any `json:"task,omitempty"`
	Problems []problemJSON  `json:"problems"`
}

// serveValidate checks a submitted document: it parses it, completes it
// into a task definition (taskId, pool, dates and metadata filled in when
// absent, as `docker-worker submit` does) and checks the payload against
// the payload schema. It creates nothing: the page then creates the task
// with the user's credentials.
func (u *UI) serveValidate(w http.ResponseWriter, r *http.Request) {
	var req validateRequest
	if err := readJSON(w, r, &req); err != nil {
		writeJSONError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, u.validate(req))
}

func (u *UI) validate(req validateRequest) validateResponse {
	fail := func(path, format string, args ...any) validateResponse {
		return validateResponse{Problems: []problemJSON{{Path: path, Message: fmt.Sprintf(format, args...)}}}
	}
	if strings.TrimSpace(req.Text) == "" {
		return fail("task", "the document is empty: paste or upload a task definition or a payload")
	}
	var doc any
	if err := yaml.Unmarshal([]byte(req.Text), &doc); err != nil {
		return fail("task", "not valid YAML or JSON: %v", err)
	}
	// Through JSON, so that YAML-only values (timestamps) become strings.
	b, err := json.Marshal(doc)
	if err != nil {
		return fail("task", "cannot be represented as JSON: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		return fail("task", "must be an object: a task definition (with a payload) or a payload")
	}
	taskID, task := u.completeTask(m, req.Name)
	resp := validateResponse{TaskID: taskID, Task: task, Problems: []problemJSON{}}
	if !slugid.Valid(taskID) {
		resp.Problems = append(resp.Problems, problemJSON{Path: "taskId", Message: fmt.Sprintf("%q is not a slug id", taskID)})
	}
	raw, _ := json.Marshal(task["payload"])
	p, problems := u.validator.Validate(raw)
	for _, pr := range problems {
		resp.Problems = append(resp.Problems, problemJSON{Path: pr.Path, Message: pr.Message})
	}
	if p != nil {
		if exp, ok := task["expires"].(string); ok {
			if t, err := time.Parse(time.RFC3339, exp); err == nil {
				for _, pr := range schemas.CheckArtifactExpiry(p, t) {
					resp.Problems = append(resp.Problems, problemJSON{Path: pr.Path, Message: pr.Message})
				}
			}
		}
	}
	if len(resp.Problems) > 0 {
		resp.Task = nil
	}
	return resp
}

// completeTask turns a payload or a partial task definition into a whole
// one, filling in what is absent.
func (u *UI) completeTask(doc map[string]any, name string) (string, map[string]any) {
	if name == "" {
		name = "submitted from the web page"
	}
	return taskdoc.Complete(doc, taskdoc.Defaults{
		ProvisionerID: u.cfg.ProvisionerID, WorkerType: u.cfg.WorkerType,
		Metadata: map[string]string{
			"name":        name,
			"description": "submitted from the docker-worker web page",
			"owner":       "docker-worker-ui@localhost",
			"source":      u.cfg.RootURL + "/submit",
		},
	}, u.cfg.Now())
}

// signRequest is the body of POST /ui/api/sign: a request to sign (its
// Authorization header) or, with Bewit, a URL to sign for GET.
type signRequest struct {
	Method string `json:"method"`
	URL    string `json:"url"`
	Bewit  bool   `json:"bewit,omitempty"`
}

type signResponse struct {
	Authorization string `json:"authorization,omitempty"`
	URL           string `json:"url,omitempty"`
}

// serveSign signs for the admin client (only with [Config].Admin): the
// Hawk Authorization header of a request, or a GET URL with a bewit. It
// signs only URLs of the origin the request came to, so a page can act
// only on this queue.
func (u *UI) serveSign(w http.ResponseWriter, r *http.Request) {
	if u.cfg.Admin == nil {
		writeJSONError(w, http.StatusNotFound, "the signing endpoint is off: start `docker-worker dev --ui-admin` to sign for the local admin client, or enter credentials")
		return
	}
	// Only for the root URL's own host: a page of another site whose name
	// was made to resolve to this address (DNS rebinding) is same-origin
	// with itself, but it does not send this Host.
	if r.Host != u.host {
		writeJSONError(w, http.StatusForbidden, fmt.Sprintf("signing is only for pages loaded from the root URL %s, not from host %q", u.cfg.RootURL, r.Host))
		return
	}
	var req signRequest
	if err := readJSON(w, r, &req); err != nil {
		writeJSONError(w, http.StatusBadRequest, err.Error())
		return
	}
	target, err := url.Parse(req.URL)
	if err != nil || (target.Scheme != "http" && target.Scheme != "https") || target.Host != r.Host || target.Fragment != "" {
		writeJSONError(w, http.StatusBadRequest, fmt.Sprintf("only URLs of this server (%s) are signed, not %q", r.Host, req.URL))
		return
	}
	if !strings.HasPrefix(target.EscapedPath(), u.base+"/api/") {
		writeJSONError(w, http.StatusBadRequest, "only API requests are signed")
		return
	}
	creds := *u.cfg.Admin
	if req.Bewit {
		signed, err := tcproxy.SignURL(creds, req.URL, u.cfg.Now().Add(signLifetime))
		if err != nil {
			writeJSONError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, signResponse{URL: signed})
		return
	}
	method := strings.ToUpper(req.Method)
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete:
	default:
		writeJSONError(w, http.StatusBadRequest, fmt.Sprintf("method %q is not signed", req.Method))
		return
	}
	header, err := tc.SignRequest(creds, method, target, u.cfg.Now())
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, signResponse{Authorization: header})
}
