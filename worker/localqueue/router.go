package localqueue

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// maxBodyBytes bounds API request bodies (artifact bytes go to _store,
// which is not bounded by this).
const maxBodyBytes = 10 << 20

// Error codes and the HTTP status each one implies.
const (
	codeMalformedPayload        = "MalformedPayload"
	codeInvalidRequestArguments = "InvalidRequestArguments"
	codeInputValidationError    = "InputValidationError"
	codeInputError              = "InputError"
	codeAuthenticationFailed    = "AuthenticationFailed"
	codeResourceNotFound        = "ResourceNotFound"
	codeRequestConflict         = "RequestConflict"
	codeInputTooLarge           = "InputTooLarge"
	codeInternalServerError     = "InternalServerError"
)

var codeStatus = map[string]int{
	codeMalformedPayload:        http.StatusBadRequest,
	codeInvalidRequestArguments: http.StatusBadRequest,
	codeInputValidationError:    http.StatusBadRequest,
	codeInputError:              http.StatusBadRequest,
	codeAuthenticationFailed:    http.StatusUnauthorized,
	codeResourceNotFound:        http.StatusNotFound,
	codeRequestConflict:         http.StatusConflict,
	codeInputTooLarge:           http.StatusRequestEntityTooLarge,
	codeInternalServerError:     http.StatusInternalServerError,
}

// apiError is an error the client is told about, as a Taskcluster error body.
type apiError struct {
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func apiErrorf(code, format string, args ...any) *apiError {
	return &apiError{code: code, message: fmt.Sprintf(format, args...)}
}

type errorBody struct {
	Code        string      `json:"code"`
	Message     string      `json:"message"`
	RequestInfo requestInfo `json:"requestInfo"`
}

type requestInfo struct {
	Method  string            `json:"method"`
	Params  map[string]string `json:"params"`
	Payload json.RawMessage   `json:"payload"`
	Time    string            `json:"time"`
}

// apiRequest is one call of an API method, after routing.
type apiRequest struct {
	r      *http.Request
	name   string // API method name, as in api.json
	params map[string]string
	body   []byte
	now    time.Time
}

// route is one API method. pattern holds literal segments, ":param"
// segments (one path segment, unescaped) and at most one trailing "*param"
// (the rest of the path, one or more segments, unescaped: artifact names and
// taskQueueIds may arrive with their slashes escaped or not).
type route struct {
	method  string
	name    string
	pattern []string
	// mutates marks calls that change state; they must be authenticated.
	mutates bool
	handle  func(q *Queue, w http.ResponseWriter, rq *apiRequest) error
}

func routeTable() []route {
	return []route{
		{"GET", "ping", []string{"ping"}, false, (*Queue).ping},
		{"PUT", "createTask", []string{"task", ":taskId"}, true, (*Queue).createTask},
		{"GET", "task", []string{"task", ":taskId"}, false, (*Queue).getTask},
		{"GET", "status", []string{"task", ":taskId", "status"}, false, (*Queue).getStatus},
		{"POST", "cancelTask", []string{"task", ":taskId", "cancel"}, true, (*Queue).cancelTask},
		{"POST", "claimWork", []string{"claim-work", "*taskQueueId"}, true, (*Queue).claimWork},
		{"POST", "reclaimTask", []string{"task", ":taskId", "runs", ":runId", "reclaim"}, true, (*Queue).reclaimTask},
		{"POST", "reportCompleted", []string{"task", ":taskId", "runs", ":runId", "completed"}, true, (*Queue).reportCompleted},
		{"POST", "reportFailed", []string{"task", ":taskId", "runs", ":runId", "failed"}, true, (*Queue).reportFailed},
		{"POST", "reportException", []string{"task", ":taskId", "runs", ":runId", "exception"}, true, (*Queue).reportException},
		{"POST", "createArtifact", []string{"task", ":taskId", "runs", ":runId", "artifacts", "*name"}, true, (*Queue).createArtifact},
		{"GET", "getArtifact", []string{"task", ":taskId", "runs", ":runId", "artifacts", "*name"}, false, (*Queue).getArtifact},
		{"GET", "getLatestArtifact", []string{"task", ":taskId", "artifacts", "*name"}, false, (*Queue).getLatestArtifact},
		{"GET", "artifactInfo", []string{"task", ":taskId", "runs", ":runId", "artifact-info", "*name"}, false, (*Queue).artifactInfo},
		{"GET", "latestArtifactInfo", []string{"task", ":taskId", "artifact-info", "*name"}, false, (*Queue).latestArtifactInfo},
		{"GET", "artifact", []string{"task", ":taskId", "runs", ":runId", "artifact-content", "*name"}, false, (*Queue).artifactContent},
		{"GET", "latestArtifact", []string{"task", ":taskId", "artifact-content", "*name"}, false, (*Queue).latestArtifactContent},
		{"GET", "listArtifacts", []string{"task", ":taskId", "runs", ":runId", "artifacts"}, false, (*Queue).listArtifacts},
		{"GET", "listLatestArtifacts", []string{"task", ":taskId", "artifacts"}, false, (*Queue).listLatestArtifacts},
	}
}

// match reports whether the escaped path segments fit pattern, and the
// unescaped parameters if so.
func match(pattern, segs []string) (map[string]string, bool) {
	params := map[string]string{}
	for i, p := range pattern {
		if i >= len(segs) {
			return nil, false
		}
		switch {
		case strings.HasPrefix(p, "*"):
			rest := strings.Join(segs[i:], "/")
			v, err := url.PathUnescape(rest)
			if err != nil || v == "" {
				return nil, false
			}
			params[p[1:]] = v
			return params, true
		case strings.HasPrefix(p, ":"):
			v, err := url.PathUnescape(segs[i])
			if err != nil || v == "" {
				return nil, false
			}
			params[p[1:]] = v
		default:
			if segs[i] != p {
				return nil, false
			}
		}
	}
	return params, len(segs) == len(pattern)
}

// Parameter patterns, as the real queue declares them.
var (
	slugPattern        = regexp.MustCompile(`^[A-Za-z0-9_-]{8}[Q-T][A-Za-z0-9_-][CGKOSWaeimquy26-][A-Za-z0-9_-]{10}[AQgw]$`)
	runIDPattern       = regexp.MustCompile(`^[1-9]*[0-9]+$`)
	taskQueueIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,38}/[A-Za-z0-9_-]{1,38}$`)
	artifactPattern    = regexp.MustCompile(`^[\x20-\x7e]+$`)
)

func checkParams(params map[string]string) error {
	for k, v := range params {
		var re *regexp.Regexp
		switch k {
		case "taskId":
			re = slugPattern
		case "runId":
			re = runIDPattern
		case "taskQueueId":
			re = taskQueueIDPattern
		case "name":
			re = artifactPattern
		}
		if re != nil && !re.MatchString(v) {
			return apiErrorf(codeInvalidRequestArguments, "Invalid request arguments: %s %q does not match %s", k, v, re)
		}
	}
	return nil
}

func (q *Queue) serveHTTP(w http.ResponseWriter, r *http.Request) {
	now := q.clock()
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), q.basePath)
	if !ok || (rest != "" && rest[0] != '/') {
		q.writeError(w, &apiRequest{r: r, now: now}, apiErrorf(codeResourceNotFound, "No such API: %s %s", r.Method, r.URL.EscapedPath()))
		return
	}
	segs := strings.Split(strings.TrimPrefix(rest, "/"), "/")
	if segs[0] == blobPrefix && len(segs) == 2 {
		q.serveBlob(w, r, segs[1], now)
		return
	}
	var rt *route
	var params map[string]string
	for _, cand := range q.routes {
		if cand.method != r.Method {
			continue
		}
		if p, ok := match(cand.pattern, segs); ok {
			rt, params = &cand, p
			break
		}
	}
	if rt == nil {
		q.writeError(w, &apiRequest{r: r, now: now}, apiErrorf(codeResourceNotFound, "No such API: %s %s", r.Method, r.URL.EscapedPath()))
		return
	}
	rq := &apiRequest{r: r, name: rt.name, params: params, now: now}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		if _, tooLarge := errors.AsType[*http.MaxBytesError](err); tooLarge {
			q.writeError(w, rq, apiErrorf(codeInputTooLarge, "Request body larger than %d bytes", maxBodyBytes))
			return
		}
		q.writeError(w, rq, apiErrorf(codeMalformedPayload, "Reading request body: %v", err))
		return
	}
	rq.body = body
	if err := checkParams(params); err != nil {
		q.writeError(w, rq, err)
		return
	}
	ai, err := q.authenticate(r, body, now)
	if err != nil {
		q.log.Debug("authentication failed", "method", rt.name, "err", err)
		q.writeError(w, rq, apiErrorf(codeAuthenticationFailed, "%v", err))
		return
	}
	if ai == nil && rt.mutates {
		q.writeError(w, rq, apiErrorf(codeAuthenticationFailed, "%s requires Hawk authentication, but the request has no Authorization header", rt.name))
		return
	}
	if ai != nil {
		rq.r = r.WithContext(withAuth(r.Context(), ai))
	}
	if err := rt.handle(q, w, rq); err != nil {
		q.writeError(w, rq, err)
	}
}

func (q *Queue) ping(w http.ResponseWriter, rq *apiRequest) error {
	q.reply(w, http.StatusOK, map[string]any{"alive": true, "uptime": rq.now.Sub(q.started).Seconds()})
	return nil
}

// reply writes v as a JSON response.
func (q *Queue) reply(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		q.log.Error("encode response", "err", err)
		status = http.StatusInternalServerError
		b = []byte(`{"code":"InternalServerError","message":"encoding the response failed"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeError answers with a Taskcluster error body; errors that are not
// *apiError are internal (logged, and reported without detail).
func (q *Queue) writeError(w http.ResponseWriter, rq *apiRequest, err error) {
	ae, ok := errors.AsType[*apiError](err)
	if !ok {
		q.log.Error("internal error", "method", rq.name, "err", err)
		ae = apiErrorf(codeInternalServerError, "Internal Server Error")
	}
	payload := json.RawMessage(`{}`)
	if len(rq.body) > 0 && json.Valid(rq.body) {
		payload = rq.body
	}
	params := rq.params
	if params == nil {
		params = map[string]string{}
	}
	status, ok := codeStatus[ae.code]
	if !ok {
		status = http.StatusInternalServerError
	}
	if status >= 500 {
		q.log.Error("request failed", "method", rq.name, "code", ae.code, "message", ae.message)
	} else {
		q.log.Debug("request refused", "method", rq.name, "code", ae.code, "message", ae.message)
	}
	q.reply(w, status, errorBody{
		Code:    ae.code,
		Message: ae.message,
		RequestInfo: requestInfo{
			Method:  rq.name,
			Params:  params,
			Payload: payload,
			Time:    formatTime(rq.now),
		},
	})
}

// decodeBody decodes the request body into v, rejecting unknown fields:
// non-JSON is MalformedPayload, JSON of the wrong shape InputValidationError.
func decodeBody(rq *apiRequest, schema string, v any) error {
	if !json.Valid(rq.body) {
		return apiErrorf(codeMalformedPayload, "Request body is not valid JSON")
	}
	dec := json.NewDecoder(strings.NewReader(string(rq.body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return invalidInput(schema, err.Error())
	}
	return nil
}

func invalidInput(schema string, problems ...string) error {
	return apiErrorf(codeInputValidationError, "Request payload must follow the schema: %s\nErrors:\n  * %s", schema, strings.Join(problems, "\n  * "))
}
