package tc

import (
	"net/http"
	"strings"
)

// apiRoute is one method of a Taskcluster service, by its HTTP method and
// path pattern ("*" matches one path segment).
type apiRoute struct {
	service, method, pattern, name string
}

// apiRoutes are the service methods this client calls.
func apiRoutes() []apiRoute {
	return []apiRoute{
		{queueService, http.MethodPost, "/claim-work/*", "claimWork"},
		{queueService, http.MethodPost, "/task/*/runs/*/reclaim", "reclaimTask"},
		{queueService, http.MethodPost, "/task/*/runs/*/completed", "reportCompleted"},
		{queueService, http.MethodPost, "/task/*/runs/*/failed", "reportFailed"},
		{queueService, http.MethodPost, "/task/*/runs/*/exception", "reportException"},
		{queueService, http.MethodPost, "/task/*/runs/*/artifacts/*", "createArtifact"},
		{queueService, http.MethodPut, "/task/*/runs/*/artifacts/*", "finishArtifact"},
		{queueService, http.MethodGet, "/task/*/runs/*/artifacts", "listArtifacts"},
		{queueService, http.MethodGet, "/task/*/artifacts", "listLatestArtifacts"},
		{queueService, http.MethodGet, "/task/*/status", "status"},
		{queueService, http.MethodPost, "/task/*/cancel", "cancelTask"},
		{queueService, http.MethodPost, "/task/*/schedule", "scheduleTask"},
		{queueService, http.MethodPost, "/task/*/rerun", "rerunTask"},
		{queueService, http.MethodGet, "/task/*", "task"},
		{queueService, http.MethodPut, "/task/*", "createTask"},
		{queueService, http.MethodGet, "/task-group/*/list", "listTaskGroup"},
		{objectService, http.MethodPut, "/upload/*", "createUpload"},
		{objectService, http.MethodPost, "/finish-upload/*", "finishUpload"},
		{indexService, http.MethodGet, "/task/*", "findTask"},
		{indexService, http.MethodPut, "/task/*", "insertTask"},
		{indexService, http.MethodGet, "/namespaces/*", "listNamespaces"},
		{indexService, http.MethodGet, "/tasks/*", "listTasks"},
		{purgeCacheService, http.MethodGet, "/purge-cache/list", "allPurgeRequests"},
		{purgeCacheService, http.MethodGet, "/purge-cache/*", "purgeRequests"},
		{purgeCacheService, http.MethodPost, "/purge-cache/*", "purgeCache"},
		{authService, http.MethodPost, "/scopes/expand", "expandScopes"},
		{authService, http.MethodGet, "/scopes/current", "currentScopes"},
	}
}

// APIMethod names the service method a call of Request is: the name in
// the service's API reference ("claimWork", "reclaimTask", ...) for the
// calls this client makes, else the HTTP method and the path's first
// segment ("GET /ping"), so that the name never carries an ID.
func APIMethod(service, method, path string) string {
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	for _, r := range apiRoutes() {
		if r.service == service && r.method == method && matchRoute(r.pattern, segs) {
			return r.name
		}
	}
	return method + " /" + segs[0]
}

// matchRoute reports whether the path segments segs match pattern.
func matchRoute(pattern string, segs []string) bool {
	ps := strings.Split(strings.TrimPrefix(pattern, "/"), "/")
	if len(ps) != len(segs) {
		return false
	}
	for i, p := range ps {
		if p != "*" && p != segs[i] {
			return false
		}
	}
	return true
}
