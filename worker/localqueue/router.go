package localqueue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
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
	codeInsufficientScopes      = "InsufficientScopes"
	codeResourceNotFound        = "ResourceNotFound"
	codeRequestConflict         = "RequestConflict"
	codeResourceExpired         = "ResourceExpired"
	codeNoMatchingMethod        = "NoMatchingMethod"
	codeInputTooLarge           = "InputTooLarge"
	codeInternalServerError     = "InternalServerError"
)

var codeStatus = map[string]int{
	codeMalformedPayload:        http.StatusBadRequest,
	codeInvalidRequestArguments: http.StatusBadRequest,
	codeInputValidationError:    http.StatusBadRequest,
	codeInputError:              http.StatusBadRequest,
	codeAuthenticationFailed:    http.StatusUnauthorized,
	codeInsufficientScopes:      http.StatusForbidden,
	codeResourceNotFound:        http.StatusNotFound,
	codeRequestConflict:         http.StatusConflict,
	codeResourceExpired:         http.StatusGone,
	codeNoMatchingMethod:        http.StatusNotAcceptable,
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
	route  *route
	name   string // API method name, as in api.json
	params map[string]string
	body   []byte
	now    time.Time
	// auth is who the request is authenticated as (anonymous: empty
	// ClientID and the anonymous scopes).
	auth *authInfo
}

// Services the handler serves under <rootUrl>/api/<service>/v1.
const (
	serviceQueue      = "queue"
	serviceObject     = "object"
	serviceIndex      = "index"
	servicePurgeCache = "purge-cache"
	serviceAuth       = "auth"
	// serviceWorkerManager is served by workermanager.go.
	serviceWorkerManager = "worker-manager"
)

// services lists them all.
var services = []string{serviceQueue, serviceObject, serviceIndex, servicePurgeCache, serviceAuth, serviceWorkerManager}

// route is one API method. pattern holds literal segments, ":param"
// segments (one path segment, unescaped), at most one "*param" (one or
// more segments, unescaped: artifact names and taskQueueIds may arrive
// with their slashes escaped or not) and at most one trailing "?param" (one
// segment that may be empty or absent: the index's listings take the root
// namespace that way).
type route struct {
	service string
	method  string
	name    string
	pattern []string
	// scopes is the route's scope expression (api.json); nil requires none.
	scopes *scopeExpr
	// byURL: the expression needs only URL parameters, so the router checks
	// it before the handler runs. Otherwise the handler calls
	// apiRequest.authorize with the parameters it loads.
	byURL  bool
	handle func(q *Queue, w http.ResponseWriter, rq *apiRequest) error
}

func routeTable() []route {
	byURL := func(service, method, name, pattern, scopes string, h func(*Queue, http.ResponseWriter, *apiRequest) error) route {
		return route{service, method, name, strings.Split(pattern, "/"), mustScopes(scopes), true, h}
	}
	byHandler := func(service, method, name, pattern, scopes string, h func(*Queue, http.ResponseWriter, *apiRequest) error) route {
		return route{service, method, name, strings.Split(pattern, "/"), mustScopes(scopes), false, h}
	}
	const (
		cancelScopes   = `{"AnyOf":["queue:cancel-task:<schedulerId>/<taskGroupId>/<taskId>","queue:cancel-task-in-project:<projectId>",{"AllOf":["queue:cancel-task","assume:scheduler-id:<schedulerId>/<taskGroupId>"]}]}`
		scheduleScopes = `{"AnyOf":["queue:schedule-task:<schedulerId>/<taskGroupId>/<taskId>","queue:schedule-task-in-project:<projectId>",{"AllOf":["queue:schedule-task","assume:scheduler-id:<schedulerId>/<taskGroupId>"]}]}`
		rerunScopes    = `{"AnyOf":["queue:rerun-task:<schedulerId>/<taskGroupId>/<taskId>","queue:rerun-task-in-project:<projectId>",{"AllOf":["queue:rerun-task","assume:scheduler-id:<schedulerId>/<taskGroupId>"]}]}`
		createScopes   = `{"AllOf":[{"for":"scope","in":"scopes","each":"<scope>"},{"for":"route","in":"routes","each":"queue:route:<route>"},"queue:create-task:project:<projectId>","queue:scheduler-id:<schedulerId>",{"AnyOf":[{"for":"priority","in":"priorities","each":"queue:create-task:<priority>:<provisionerId>/<workerType>"}]}]}`
		artifactGet    = `{"AllOf":[{"for":"name","in":"names","each":"queue:get-artifact:<name>"}]}`
		q, o           = serviceQueue, serviceObject
		ix             = serviceIndex
		pc             = servicePurgeCache
		au             = serviceAuth
	)
	return append([]route{
		byURL(q, "GET", "ping", "ping", "", (*Queue).ping),
		byURL(o, "GET", "ping", "ping", "", (*Queue).ping),
		byURL(q, "GET", "task", "task/:taskId", "queue:get-task:<taskId>", (*Queue).getTask),
		byHandler(q, "POST", "tasks", "tasks", `{"AllOf":[{"for":"taskId","in":"taskIds","each":"queue:get-task:<taskId>"}]}`, (*Queue).getTasks),
		byHandler(q, "POST", "statuses", "tasks/status", `{"AllOf":[{"for":"taskId","in":"taskIds","each":"queue:status:<taskId>"}]}`, (*Queue).getStatuses),
		byURL(q, "GET", "status", "task/:taskId/status", "queue:status:<taskId>", (*Queue).getStatus),
		byURL(q, "GET", "listTaskGroup", "task-group/:taskGroupId/list", "queue:list-task-group:<taskGroupId>", (*Queue).listTaskGroup),
		byURL(q, "GET", "getTaskGroup", "task-group/:taskGroupId", "queue:list-task-group:<taskGroupId>", (*Queue).getTaskGroup),
		byURL(q, "GET", "listDependentTasks", "task/:taskId/dependents", "queue:list-dependent-tasks:<taskId>", (*Queue).listDependentTasks),
		byHandler(q, "PUT", "createTask", "task/:taskId", createScopes, (*Queue).createTask),
		byHandler(q, "POST", "scheduleTask", "task/:taskId/schedule", scheduleScopes, (*Queue).scheduleTask),
		byHandler(q, "POST", "rerunTask", "task/:taskId/rerun", rerunScopes, (*Queue).rerunTask),
		byHandler(q, "POST", "cancelTask", "task/:taskId/cancel", cancelScopes, (*Queue).cancelTask),
		byHandler(q, "POST", "claimWork", "claim-work/*taskQueueId", `{"AllOf":["queue:claim-work:<taskQueueId>","queue:worker-id:<workerGroup>/<workerId>"]}`, (*Queue).claimWork),
		byURL(q, "POST", "reclaimTask", "task/:taskId/runs/:runId/reclaim", "queue:reclaim-task:<taskId>/<runId>", (*Queue).reclaimTask),
		byURL(q, "POST", "reportCompleted", "task/:taskId/runs/:runId/completed", "queue:resolve-task:<taskId>/<runId>", (*Queue).reportCompleted),
		byURL(q, "POST", "reportFailed", "task/:taskId/runs/:runId/failed", "queue:resolve-task:<taskId>/<runId>", (*Queue).reportFailed),
		byURL(q, "POST", "reportException", "task/:taskId/runs/:runId/exception", "queue:resolve-task:<taskId>/<runId>", (*Queue).reportException),
		byHandler(q, "POST", "createArtifact", "task/:taskId/runs/:runId/artifacts/*name", "queue:create-artifact:<taskId>/<runId>", (*Queue).createArtifact),
		byURL(q, "PUT", "finishArtifact", "task/:taskId/runs/:runId/artifacts/*name", "queue:create-artifact:<taskId>/<runId>", (*Queue).finishArtifact),
		byHandler(q, "GET", "getArtifact", "task/:taskId/runs/:runId/artifacts/*name", artifactGet, (*Queue).getArtifact),
		byHandler(q, "GET", "getLatestArtifact", "task/:taskId/artifacts/*name", artifactGet, (*Queue).getLatestArtifact),
		byURL(q, "GET", "listArtifacts", "task/:taskId/runs/:runId/artifacts", "queue:list-artifacts:<taskId>:<runId>", (*Queue).listArtifacts),
		byURL(q, "GET", "listLatestArtifacts", "task/:taskId/artifacts", "queue:list-artifacts:<taskId>", (*Queue).listLatestArtifacts),
		byURL(q, "GET", "artifactInfo", "task/:taskId/runs/:runId/artifact-info/*name", "queue:list-artifacts:<taskId>:<runId>", (*Queue).artifactInfo),
		byURL(q, "GET", "latestArtifactInfo", "task/:taskId/artifact-info/*name", "queue:list-artifacts:<taskId>", (*Queue).latestArtifactInfo),
		byHandler(q, "GET", "artifact", "task/:taskId/runs/:runId/artifact-content/*name", artifactGet, (*Queue).artifactContent),
		byHandler(q, "GET", "latestArtifact", "task/:taskId/artifact-content/*name", artifactGet, (*Queue).latestArtifactContent),
		byURL(q, "GET", "pendingTasks", "pending/*taskQueueId", "queue:pending-count:<taskQueueId>", (*Queue).pendingTasks),
		byURL(q, "GET", "taskQueueCounts", "task-queues/*taskQueueId/counts", `{"AllOf":["queue:pending-count:<taskQueueId>","queue:claimed-count:<taskQueueId>"]}`, (*Queue).taskQueueCounts),
		byHandler(o, "PUT", "createUpload", "upload/*name", "object:upload:<projectId>:<name>", (*Queue).createUpload),
		byHandler(o, "POST", "finishUpload", "finish-upload/*name", "object:upload:<projectId>:<name>", (*Queue).finishUpload),
		byURL(o, "PUT", "startDownload", "start-download/*name", "object:download:<name>", (*Queue).startDownload),
		byURL(o, "GET", "object", "metadata/*name", "object:download:<name>", (*Queue).objectMetadata),
		byURL(o, "GET", "download", "download/*name", "object:download:<name>", (*Queue).download),

		byURL(ix, "GET", "ping", "ping", "", (*Queue).ping),
		byURL(ix, "GET", "findTask", "task/:indexPath", "index:find-task:<indexPath>", (*Queue).findTask),
		byHandler(ix, "POST", "findTasksAtIndex", "tasks/indexes", `{"AllOf":[{"for":"indexPath","in":"indexPaths","each":"index:find-task:<indexPath>"}]}`, (*Queue).findTasksAtIndex),
		byURL(ix, "GET", "listNamespaces", "namespaces/?namespace", "index:list-namespaces:<namespace>", (*Queue).listNamespaces),
		byURL(ix, "GET", "listTasks", "tasks/?namespace", "index:list-tasks:<namespace>", (*Queue).listIndexedTasks),
		byHandler(ix, "PUT", "insertTask", "task/:namespace", "index:insert-task:<namespace>", (*Queue).insertTask),
		byURL(ix, "DELETE", "deleteTask", "task/:namespace", "index:delete-task:<namespace>", (*Queue).deleteIndexedTask),
		byURL(ix, "GET", "findArtifactFromTask", "task/:indexPath/artifacts/*name", "queue:get-artifact:<name>", (*Queue).findArtifactFromTask),

		byURL(pc, "GET", "ping", "ping", "", (*Queue).ping),
		byHandler(pc, "POST", "purgeCache", "purge-cache/*workerPoolId", "purge-cache:<workerPoolId>:<cacheName>", (*Queue).purgeCache),
		byURL(pc, "GET", "allPurgeRequests", "purge-cache/list", "purge-cache:all-purge-requests", (*Queue).allPurgeRequests),
		byURL(pc, "GET", "purgeRequests", "purge-cache/*workerPoolId", "purge-cache:purge-requests::<workerPoolId>", (*Queue).purgeRequests),

		byURL(au, "GET", "ping", "ping", "", (*Queue).ping),
		byHandler(au, "POST", "expandScopes", "scopes/expand", "auth:expand-scopes", (*Queue).expandScopesRoute),
		byURL(au, "GET", "currentScopes", "scopes/current", "auth:current-scopes", (*Queue).currentScopes),
	}, workerManagerRoutes()...)
}

// match reports whether the escaped path segments fit pattern, and the
// unescaped parameters if so. A "*param" segment takes one or more
// segments: all the rest when it is last, otherwise as many as leave the
// literal segments after it to match the end of the path.
func match(pattern, segs []string) (map[string]string, bool) {
	params := map[string]string{}
	for i, p := range pattern {
		if opt, ok := strings.CutPrefix(p, "?"); ok && i == len(pattern)-1 {
			switch {
			case i == len(segs):
				params[opt] = ""
				return params, true
			case i != len(segs)-1:
				return nil, false
			}
			v, err := url.PathUnescape(segs[i])
			if err != nil {
				return nil, false
			}
			params[opt] = v
			return params, true
		}
		if i >= len(segs) {
			return nil, false
		}
		switch {
		case strings.HasPrefix(p, "*"):
			tail := pattern[i+1:]
			n := len(segs) - i - len(tail)
			if n < 1 {
				return nil, false
			}
			for j, lit := range tail {
				seg := segs[i+n+j]
				if name, ok := strings.CutPrefix(lit, ":"); ok { // a one-segment parameter after the rest
					v, err := url.PathUnescape(seg)
					if err != nil || v == "" {
						return nil, false
					}
					params[name] = v
					continue
				}
				if seg != lit {
					return nil, false
				}
			}
			v, err := url.PathUnescape(strings.Join(segs[i:i+n], "/"))
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
		case "taskId", "taskGroupId":
			re = slugPattern
		case "runId":
			re = runIDPattern
		case "taskQueueId":
			re = taskQueueIDPattern
		case "name":
			re = artifactPattern
		case "namespace", "indexPath":
			if v == "" { // an optional namespace: the root
				continue
			}
			re = namespacePattern
		case "workerPoolId":
			re = taskQueueIDPattern
		}
		if re != nil && !re.MatchString(v) {
			return apiErrorf(codeInvalidRequestArguments, "Invalid request arguments: %s %q does not match %s", k, v, re)
		}
	}
	return nil
}

func (q *Queue) serveHTTP(w http.ResponseWriter, r *http.Request) {
	now := q.clock()
	notFound := func() {
		q.writeError(w, &apiRequest{r: r, now: now}, apiErrorf(codeResourceNotFound, "No such API: %s %s", r.Method, r.URL.EscapedPath()))
	}
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), q.rootPath+"/api/")
	if !ok {
		notFound()
		return
	}
	segs := strings.Split(rest, "/")
	if len(segs) < 3 || segs[1] != "v1" || !slices.Contains(services, segs[0]) {
		notFound()
		return
	}
	service := segs[0]
	segs = segs[2:]
	if service == serviceQueue && q.local != nil && segs[0] == blobPrefix && len(segs) == 2 {
		q.local.serve(q, w, r, segs[1], now)
		return
	}
	var rt *route
	var params map[string]string
	for i := range q.routes {
		cand := &q.routes[i]
		if cand.service != service || cand.method != r.Method {
			continue
		}
		if p, ok := match(cand.pattern, segs); ok {
			rt, params = cand, p
			break
		}
	}
	if rt == nil {
		notFound()
		return
	}
	rq := &apiRequest{r: r, route: rt, name: rt.name, params: params, now: now}
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
	if ai == nil {
		ai = &authInfo{Scopes: q.anonymous}
	}
	// The answer is held until every change applied before it is written
	// is durable (see groupcommit.go): the request's own, and any it saw.
	// (Not deferred: after a panic nothing is sent.)
	held := &heldWriter{w: w}
	ctx := context.WithValue(r.Context(), deferDurableKey{}, true)
	w = held
	if ai.nonce != nil {
		ctx = context.WithValue(ctx, pendingNonceKey{}, ai.nonce)
		w = &nonceWriter{ResponseWriter: w, ctx: ctx, nonce: ai.nonce, log: q.log}
	}
	rq.r = r.WithContext(ctx)
	rq.auth = ai
	q.handle(w, rq)
	q.sendDurable(held, rq)
}

// handle checks the scopes the URL alone decides, then runs the route's
// handler; errors are answered on w.
func (q *Queue) handle(w http.ResponseWriter, rq *apiRequest) {
	if rq.route.byURL {
		if err := rq.authorize(nil); err != nil {
			q.writeError(w, rq, err)
			return
		}
	}
	if err := rq.route.handle(q, w, rq); err != nil {
		q.writeError(w, rq, err)
	}
}

// sendDurable sends the held answer once everything applied so far is
// durable, or an internal error when writing it failed.
func (q *Queue) sendDurable(held *heldWriter, rq *apiRequest) {
	if err := q.commits.sync(); err != nil {
		h := held.w.Header()
		for k := range h {
			delete(h, k)
		}
		q.writeError(held.w, rq, err)
		return
	}
	held.send()
}

// authorize checks the route's scope expression against the request's
// scopes, with the URL parameters and extra (strings, lists of strings and
// booleans) substituted. It returns an InsufficientScopes error naming
// what is missing.
func (rq *apiRequest) authorize(extra map[string]any) error {
	if rq.route.scopes == nil {
		return nil
	}
	params := make(map[string]any, len(rq.params)+len(extra))
	for k, v := range rq.params {
		params[k] = v
	}
	for k, v := range extra {
		params[k] = v
	}
	required, err := rq.route.scopes.expand(params)
	if err != nil {
		return fmt.Errorf("authorize %s: %w", rq.name, err)
	}
	missing := required.unsatisfied(rq.auth.Scopes)
	if missing == nil {
		return nil
	}
	who := fmt.Sprintf("Client `%s`", rq.auth.ClientID)
	if rq.auth.ClientID == "" {
		who = "This request carries no credentials, so it has only the anonymous scopes, and"
	}
	return apiErrorf(codeInsufficientScopes, "%s lacks the scopes this request needs. Missing:\n\n```\n%s\n```\n\nThe request needs the client to satisfy this scope expression:\n\n```\n%s\n```\n\nMethod %s; the client's scopes were:\n\n```\n%s\n```",
		who, indentJSON(missing), indentJSON(required), rq.name, indentJSON(rq.auth.Scopes))
}

func indentJSON(v any) string {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
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
