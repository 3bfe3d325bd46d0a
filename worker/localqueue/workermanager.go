package localqueue

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"go.dockerworker.dev/docker-worker/worker/localqueue/internal/hawkserver"
)

// The worker-manager subset (`<rootUrl>/api/worker-manager/v1`) lets a
// worker that runs alone register itself as on a real deployment:
// createWorkerPool and workerPool for the pool (its workerConfig is what
// registration hands out), createWorker for a static worker and its
// secret, registerWorker (static and aws providers) for temporary
// credentials, reregisterWorker to renew them, shouldWorkerTerminate and
// removeWorker. Its state lives in memory only: pools and workers are
// gone when the process stops.
//
// The aws provider's identity proof is an instance identity document and
// its signature. The real service verifies the signature with AWS's
// public certificate for the region; this one verifies it (RSA PKCS #1
// v1.5 over SHA-256, base64) with the key it is configured to trust
// (WorkerManagerConfig.AWSIdentityKey), which a test's metadata server
// signs with. The document's instanceId must be the workerId and its
// region the workerGroup, as worker-manager's aws provider names them; an
// instance registers once. Without a configured key aws registrations are
// refused.

// WorkerManagerConfig configures the worker-manager subset.
type WorkerManagerConfig struct {
	// Providers maps provider IDs to their type ("static" or "aws"); nil
	// means {"static": "static"} (plus {"aws": "aws"} when AWSIdentityKey
	// is set).
	Providers map[string]string
	// AWSIdentityKey is the public key that verifies instance identity
	// document signatures.
	AWSIdentityKey *rsa.PublicKey
	// CredentialLifetime is how long registered credentials last when
	// the pool's config has no lifecycle.reregistrationTimeout; 0: 96
	// hours, worker-manager's default.
	CredentialLifetime time.Duration
}

// DefaultCredentialLifetime is WorkerManagerConfig.CredentialLifetime's
// default.
const DefaultCredentialLifetime = 96 * time.Hour

const (
	providerTypeStatic = "static"
	providerTypeAWS    = "aws"
)

const (
	createWorkerPoolSchema = "/schemas/worker-manager/v1/create-worker-pool-request.json#"
	createWorkerSchema     = "/schemas/worker-manager/v1/create-worker-request.json#"
	registerWorkerSchema   = "/schemas/worker-manager/v1/register-worker-request.json#"
	reregisterWorkerSchema = "/schemas/worker-manager/v1/reregister-worker-request.json#"
)

var (
	wmIdentifier        = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,38}$`)
	wmWorkerPoolPattern = regexp.MustCompile(`^[a-zA-Z0-9-_]{1,38}/[a-z]([-a-z0-9]{0,36}[a-z0-9])?$`)
	wmSecretPattern     = regexp.MustCompile(`^[a-zA-Z0-9_-]{44}$`)
)

// Worker states, as worker-manager names them.
const (
	workerRequested = "requested"
	workerRunning   = "running"
	workerStopping  = "stopping"
	workerStopped   = "stopped"
)

// workerManager is the subset's state.
type workerManager struct {
	providers map[string]string
	awsKey    *rsa.PublicKey
	lifetime  time.Duration

	mu      sync.Mutex
	pools   map[string]*wmPool
	workers map[string]*wmWorker // by workerKey
}

type wmPool struct {
	ID           string
	ProviderID   string
	Description  string
	Owner        string
	EmailOnError bool
	Config       json.RawMessage
	Created      time.Time
	LastModified time.Time
}

type wmWorker struct {
	PoolID, Group, ID, ProviderID string
	Capacity                      int
	State                         string
	StaticSecret                  string
	// Secret is the one reregisterWorker wants next ("" before the first
	// registration).
	Secret                                      string
	Created, Expires, LastModified, LastChecked time.Time
	// Terminate and Reason: shouldWorkerTerminate's answer once set by
	// RequestTermination.
	Terminate bool
	Reason    string
	// Removed is set by removeWorker.
	Removed bool
}

func workerKey(pool, group, id string) string { return pool + "\x00" + group + "\x00" + id }

func newWorkerManager(cfg WorkerManagerConfig) (*workerManager, error) {
	wm := &workerManager{
		providers: maps.Clone(cfg.Providers),
		awsKey:    cfg.AWSIdentityKey,
		lifetime:  cfg.CredentialLifetime,
		pools:     map[string]*wmPool{},
		workers:   map[string]*wmWorker{},
	}
	if wm.providers == nil {
		wm.providers = map[string]string{"static": providerTypeStatic}
		if wm.awsKey != nil {
			wm.providers["aws"] = providerTypeAWS
		}
	}
	for id, typ := range wm.providers {
		if !wmIdentifier.MatchString(id) || (typ != providerTypeStatic && typ != providerTypeAWS) {
			return nil, fmt.Errorf("worker-manager provider %q of type %q: want an identifier of type static or aws", id, typ)
		}
	}
	if wm.lifetime <= 0 {
		wm.lifetime = DefaultCredentialLifetime
	}
	return wm, nil
}

func (w *wmWorker) toJSON() map[string]any {
	return map[string]any{
		"workerPoolId": w.PoolID,
		"workerGroup":  w.Group,
		"workerId":     w.ID,
		"providerId":   w.ProviderID,
		"created":      formatTime(w.Created),
		"expires":      formatTime(w.Expires),
		"state":        w.State,
		"capacity":     w.Capacity,
		"lastModified": formatTime(w.LastModified),
		"lastChecked":  formatTime(w.LastChecked),
	}
}

// poolJSON is worker-pool-full.json of p; wm.mu is held.
func (wm *workerManager) poolJSON(p *wmPool) map[string]any {
	counts := map[string]int{}
	capacity := map[string]int{}
	for _, w := range wm.workers {
		if w.PoolID == p.ID {
			counts[w.State]++
			capacity[w.State] += w.Capacity
		}
	}
	return map[string]any{
		"workerPoolId":      p.ID,
		"providerId":        p.ProviderID,
		"description":       p.Description,
		"owner":             p.Owner,
		"emailOnError":      p.EmailOnError,
		"config":            p.Config,
		"created":           formatTime(p.Created),
		"lastModified":      formatTime(p.LastModified),
		"currentCapacity":   capacity[workerRunning] + capacity[workerRequested],
		"requestedCount":    counts[workerRequested],
		"runningCount":      counts[workerRunning],
		"stoppingCount":     counts[workerStopping],
		"stoppedCount":      counts[workerStopped],
		"requestedCapacity": capacity[workerRequested],
		"runningCapacity":   capacity[workerRunning],
		"stoppingCapacity":  capacity[workerStopping],
		"stoppedCapacity":   capacity[workerStopped],
	}
}

func workerManagerRoutes() []route {
	mk := func(byURL bool, method, name, pattern, scopes string, h func(*Queue, http.ResponseWriter, *apiRequest) error) route {
		return route{serviceWorkerManager, method, name, strings.Split(pattern, "/"), mustScopes(scopes), byURL, h}
	}
	const (
		byURL, byHandler = true, false
		one              = "<workerPoolId>/<workerGroup>/<workerId>"
	)
	return []route{
		mk(byURL, "GET", "ping", "ping", "", (*Queue).ping),
		mk(byHandler, "PUT", "createWorkerPool", "worker-pool/*workerPoolId", `{"AllOf":["worker-manager:manage-worker-pool:<workerPoolId>","worker-manager:provider:<providerId>"]}`, (*Queue).createWorkerPool),
		mk(byURL, "GET", "workerPool", "worker-pool/*workerPoolId", "worker-manager:get-worker-pool:<workerPoolId>", (*Queue).workerPool),
		mk(byURL, "PUT", "createWorker", "workers/*workerPoolId/:workerGroup/:workerId", "worker-manager:create-worker:"+one, (*Queue).createWorker),
		mk(byURL, "DELETE", "removeWorker", "workers/*workerPoolId/:workerGroup/:workerId", "worker-manager:remove-worker:"+one, (*Queue).removeWorker),
		mk(byURL, "GET", "shouldWorkerTerminate", "workers/*workerPoolId/:workerGroup/:workerId/should-terminate", "worker-manager:should-worker-terminate:"+one, (*Queue).shouldWorkerTerminate),
		mk(byURL, "POST", "registerWorker", "worker/register", "", (*Queue).registerWorker),
		mk(byHandler, "POST", "reregisterWorker", "worker/reregister", "worker-manager:reregister-worker:"+one, (*Queue).reregisterWorker),
	}
}

func (q *Queue) createWorkerPool(w http.ResponseWriter, rq *apiRequest) error {
	var in struct {
		ProviderID   *string         `json:"providerId"`
		Description  *string         `json:"description"`
		Config       json.RawMessage `json:"config"`
		Owner        *string         `json:"owner"`
		EmailOnError *bool           `json:"emailOnError"`
	}
	if err := decodeBody(rq, createWorkerPoolSchema, &in); err != nil {
		return err
	}
	var problems []string
	if in.ProviderID == nil || !wmIdentifier.MatchString(*in.ProviderID) {
		problems = append(problems, "providerId is required: 1-38 characters of a-z, A-Z, 0-9, '-' and '_'")
	}
	if in.Description == nil || in.Owner == nil || in.EmailOnError == nil {
		problems = append(problems, "description, owner and emailOnError are required")
	}
	if len(in.Config) == 0 || in.Config[0] != '{' {
		problems = append(problems, "config is required and must be an object")
	}
	if len(problems) > 0 {
		return invalidInput(createWorkerPoolSchema, problems...)
	}
	if err := rq.authorize(map[string]any{"providerId": *in.ProviderID}); err != nil {
		return err
	}
	poolID := rq.params["workerPoolId"]
	if !wmWorkerPoolPattern.MatchString(poolID) {
		return apiErrorf(codeInvalidRequestArguments, "Invalid request arguments: workerPoolId %q does not match %s", poolID, wmWorkerPoolPattern)
	}
	wm := q.wm
	if _, ok := wm.providers[*in.ProviderID]; !ok {
		return apiErrorf(codeInputError, "Invalid providerId %q", *in.ProviderID)
	}
	var workerConfig struct {
		WorkerConfig json.RawMessage `json:"workerConfig"`
	}
	if err := json.Unmarshal(in.Config, &workerConfig); err != nil {
		return invalidInput(createWorkerPoolSchema, "config: "+err.Error())
	}
	wm.mu.Lock()
	defer wm.mu.Unlock()
	if _, dup := wm.pools[poolID]; dup {
		return apiErrorf(codeRequestConflict, "Worker pool %s already exists", poolID)
	}
	p := &wmPool{ID: poolID, ProviderID: *in.ProviderID, Description: *in.Description, Owner: *in.Owner,
		EmailOnError: *in.EmailOnError, Config: in.Config, Created: rq.now, LastModified: rq.now}
	wm.pools[poolID] = p
	q.log.Info("worker pool created", "workerPoolId", poolID, "providerId", p.ProviderID)
	q.reply(w, http.StatusOK, wm.poolJSON(p))
	return nil
}

func (q *Queue) workerPool(w http.ResponseWriter, rq *apiRequest) error {
	wm := q.wm
	wm.mu.Lock()
	defer wm.mu.Unlock()
	p, ok := wm.pools[rq.params["workerPoolId"]]
	if !ok {
		return apiErrorf(codeResourceNotFound, "Worker Pool does not exist")
	}
	q.reply(w, http.StatusOK, wm.poolJSON(p))
	return nil
}

func (q *Queue) createWorker(w http.ResponseWriter, rq *apiRequest) error {
	var in struct {
		Expires      *string `json:"expires"`
		Capacity     *int    `json:"capacity"`
		ProviderInfo *struct {
			StaticSecret string `json:"staticSecret"`
		} `json:"providerInfo"`
	}
	if err := decodeBody(rq, createWorkerSchema, &in); err != nil {
		return err
	}
	if in.Expires == nil {
		return invalidInput(createWorkerSchema, "expires is required")
	}
	expires, err := parseTime(*in.Expires)
	if err != nil {
		return invalidInput(createWorkerSchema, "expires must be a date-time")
	}
	capacity := 1
	if in.Capacity != nil {
		capacity = *in.Capacity
	}
	pool, group, id := rq.params["workerPoolId"], rq.params["workerGroup"], rq.params["workerId"]
	if !wmIdentifier.MatchString(group) || !wmIdentifier.MatchString(id) {
		return apiErrorf(codeInvalidRequestArguments, "Invalid request arguments: workerGroup and workerId must match %s", wmIdentifier)
	}
	wm := q.wm
	wm.mu.Lock()
	defer wm.mu.Unlock()
	p, ok := wm.pools[pool]
	if !ok {
		return apiErrorf(codeResourceNotFound, "Worker Pool does not exist")
	}
	if wm.providers[p.ProviderID] != providerTypeStatic {
		return apiErrorf(codeInputError, "Provider %s does not support creating workers", p.ProviderID)
	}
	if in.ProviderInfo == nil || !wmSecretPattern.MatchString(in.ProviderInfo.StaticSecret) {
		return apiErrorf(codeInputError, "providerInfo.staticSecret is required: 44 characters of a-z, A-Z, 0-9, '-' and '_'")
	}
	if capacity < 1 {
		return invalidInput(createWorkerSchema, "capacity must be at least 1")
	}
	key := workerKey(pool, group, id)
	if _, dup := wm.workers[key]; dup {
		return apiErrorf(codeRequestConflict, "Worker already exists")
	}
	wk := &wmWorker{PoolID: pool, Group: group, ID: id, ProviderID: p.ProviderID, Capacity: capacity,
		State: workerRequested, StaticSecret: in.ProviderInfo.StaticSecret,
		Created: rq.now, Expires: expires, LastModified: rq.now, LastChecked: rq.now}
	wm.workers[key] = wk
	q.reply(w, http.StatusOK, wk.toJSON())
	return nil
}

// registerWorker checks the worker's identity proof against its provider
// and hands out credentials and the pool's workerConfig.
func (q *Queue) registerWorker(w http.ResponseWriter, rq *apiRequest) error {
	var in struct {
		WorkerPoolID        string            `json:"workerPoolId"`
		ProviderID          string            `json:"providerId"`
		WorkerGroup         string            `json:"workerGroup"`
		WorkerID            string            `json:"workerId"`
		WorkerIdentityProof map[string]string `json:"workerIdentityProof"`
		SystemBootTime      string            `json:"systemBootTime"`
	}
	if err := decodeBody(rq, registerWorkerSchema, &in); err != nil {
		return err
	}
	if !wmWorkerPoolPattern.MatchString(in.WorkerPoolID) || !wmIdentifier.MatchString(in.ProviderID) ||
		!wmIdentifier.MatchString(in.WorkerGroup) || !wmIdentifier.MatchString(in.WorkerID) || in.WorkerIdentityProof == nil {
		return invalidInput(registerWorkerSchema, "workerPoolId, providerId, workerGroup, workerId and workerIdentityProof are required and must match their patterns")
	}
	wm := q.wm
	wm.mu.Lock()
	defer wm.mu.Unlock()
	p, ok := wm.pools[in.WorkerPoolID]
	if !ok {
		return apiErrorf(codeResourceNotFound, "Worker pool %s does not exist", in.WorkerPoolID)
	}
	if p.ProviderID != in.ProviderID {
		return apiErrorf(codeInputError, "Worker pool %s does not have provider %s", in.WorkerPoolID, in.ProviderID)
	}
	key := workerKey(in.WorkerPoolID, in.WorkerGroup, in.WorkerID)
	wk := wm.workers[key]
	proof := in.WorkerIdentityProof
	switch wm.providers[p.ProviderID] {
	case providerTypeStatic:
		if wk == nil {
			return apiErrorf(codeResourceNotFound, "Worker %s/%s/%s does not exist", in.WorkerPoolID, in.WorkerGroup, in.WorkerID)
		}
		if s := proof["staticSecret"]; len(proof) != 1 || s == "" || !secretEqual(s, wk.StaticSecret) {
			return apiErrorf(codeInputError, "Could not verify the identity of worker %s/%s/%s: bad static secret", in.WorkerPoolID, in.WorkerGroup, in.WorkerID)
		}
		if wk.Removed {
			return apiErrorf(codeInputError, "Worker %s/%s/%s was removed", in.WorkerPoolID, in.WorkerGroup, in.WorkerID)
		}
	case providerTypeAWS:
		if err := wm.verifyAWS(proof, in.WorkerGroup, in.WorkerID); err != nil {
			return apiErrorf(codeInputError, "Could not verify the identity of worker %s/%s/%s: %v", in.WorkerPoolID, in.WorkerGroup, in.WorkerID, err)
		}
		if wk != nil {
			return apiErrorf(codeInputError, "Worker %s/%s/%s has already registered", in.WorkerPoolID, in.WorkerGroup, in.WorkerID)
		}
		wk = &wmWorker{PoolID: in.WorkerPoolID, Group: in.WorkerGroup, ID: in.WorkerID, ProviderID: p.ProviderID,
			Capacity: 1, Created: rq.now}
		wm.workers[key] = wk
	default:
		return apiErrorf(codeInputError, "Provider %s cannot register workers", p.ProviderID)
	}
	creds, secret, err := q.issueWorkerCredentials(wk, rq.now)
	if err != nil {
		return err
	}
	wk.State, wk.Secret, wk.LastModified = workerRunning, secret, rq.now
	q.log.Info("worker registered", "workerPoolId", wk.PoolID, "workerGroup", wk.Group, "workerId", wk.ID, "expires", formatTime(wk.Expires))
	q.reply(w, http.StatusOK, map[string]any{
		"credentials":  creds,
		"expires":      formatTime(wk.Expires),
		"secret":       secret,
		"workerConfig": p.workerConfig(wk.Group),
	})
	return nil
}

// poolConfig is the part of a pool's config the subset reads: the static
// provider's workerConfig and lifecycle, or the aws provider's launch
// configurations, each with its region and workerConfig.
type poolConfig struct {
	WorkerConfig  json.RawMessage `json:"workerConfig"`
	LaunchConfigs []struct {
		Region       string          `json:"region"`
		WorkerConfig json.RawMessage `json:"workerConfig"`
	} `json:"launchConfigs"`
	Lifecycle struct {
		ReregistrationTimeout int `json:"reregistrationTimeout"` // seconds
	} `json:"lifecycle"`
}

func (p *wmPool) config() poolConfig {
	var c poolConfig
	json.Unmarshal(p.Config, &c) // an object, checked by createWorkerPool; other shapes read as empty
	return c
}

// workerConfig is the workerConfig handed to a worker of group: the
// pool's, else that of the first launch configuration in the worker's
// region (an aws worker's group), else {}.
func (p *wmPool) workerConfig(group string) json.RawMessage {
	c := p.config()
	wc := c.WorkerConfig
	if len(wc) == 0 {
		for _, lc := range c.LaunchConfigs {
			if lc.Region == group {
				wc = lc.WorkerConfig
				break
			}
		}
	}
	if len(wc) == 0 || wc[0] != '{' {
		return json.RawMessage("{}")
	}
	return wc
}

// verifyAWS checks an aws identity proof: the signature of the document
// with the trusted key, and that the document names the instance and
// region registering.
func (wm *workerManager) verifyAWS(proof map[string]string, group, id string) error {
	if wm.awsKey == nil {
		return errors.New("this worker-manager trusts no instance identity key")
	}
	doc, sig := proof["document"], proof["signature"]
	if len(proof) != 2 || doc == "" || sig == "" {
		return errors.New("the proof must be {document, signature}")
	}
	raw, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(sig), ""))
	if err != nil {
		return fmt.Errorf("signature is not base64: %w", err)
	}
	sum := sha256.Sum256([]byte(doc))
	if err := rsa.VerifyPKCS1v15(wm.awsKey, crypto.SHA256, sum[:], raw); err != nil {
		return errors.New("the instance identity document's signature does not verify")
	}
	var d struct {
		InstanceID string `json:"instanceId"`
		Region     string `json:"region"`
	}
	if err := json.Unmarshal([]byte(doc), &d); err != nil {
		return fmt.Errorf("instance identity document: %w", err)
	}
	if d.InstanceID != id || d.Region != group {
		return fmt.Errorf("the document is of instance %s in %s, not workerId %s in workerGroup %s", d.InstanceID, d.Region, id, group)
	}
	return nil
}

// issueWorkerCredentials makes wk's temporary credentials (named
// worker/<providerId>/<workerPoolId>/<workerGroup>/<workerId>, as
// worker-manager names them) for the configured lifetime, and the next
// reregistration secret; wk.Expires is set. The lifetime is the pool's
// lifecycle.reregistrationTimeout when it has one. wm.mu is held.
func (q *Queue) issueWorkerCredentials(wk *wmWorker, now time.Time) (map[string]string, string, error) {
	one := wk.PoolID + "/" + wk.Group + "/" + wk.ID
	scopes := []string{
		"assume:worker-pool:" + wk.PoolID,
		"assume:worker-id:" + wk.Group + "/" + wk.ID,
		"queue:worker-id:" + wk.Group + "/" + wk.ID,
		"secrets:get:worker-pool:" + wk.PoolID,
		"queue:claim-work:" + wk.PoolID,
		"worker-manager:remove-worker:" + one,
		"worker-manager:reregister-worker:" + one,
		"worker-manager:should-worker-terminate:" + one,
	}
	lifetime := q.wm.lifetime
	if p := q.wm.pools[wk.PoolID]; p != nil {
		if secs := p.config().Lifecycle.ReregistrationTimeout; secs > 0 {
			lifetime = time.Duration(secs) * time.Second
		}
	}
	wk.Expires = now.Add(lifetime)
	c, err := hawkserver.IssueTemporaryCredentials(issuerClientID, q.issuerToken,
		"worker/"+wk.ProviderID+"/"+one, scopes, now.Add(-5*time.Minute), wk.Expires)
	if err != nil {
		return nil, "", fmt.Errorf("issue worker credentials: %w", err)
	}
	b := make([]byte, 33)
	rand.Read(b)
	out := map[string]string{"clientId": c.ClientID, "accessToken": c.AccessToken}
	if c.Certificate != "" {
		out["certificate"] = c.Certificate
	}
	return out, base64.RawURLEncoding.EncodeToString(b), nil
}

// secretEqual compares secrets in constant time.
func secretEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

func (q *Queue) reregisterWorker(w http.ResponseWriter, rq *apiRequest) error {
	var in struct {
		WorkerPoolID string `json:"workerPoolId"`
		WorkerGroup  string `json:"workerGroup"`
		WorkerID     string `json:"workerId"`
		Secret       string `json:"secret"`
	}
	if err := decodeBody(rq, reregisterWorkerSchema, &in); err != nil {
		return err
	}
	if !wmWorkerPoolPattern.MatchString(in.WorkerPoolID) || !wmIdentifier.MatchString(in.WorkerGroup) ||
		!wmIdentifier.MatchString(in.WorkerID) || !wmSecretPattern.MatchString(in.Secret) {
		return invalidInput(reregisterWorkerSchema, "workerPoolId, workerGroup, workerId and secret are required and must match their patterns")
	}
	if err := rq.authorize(map[string]any{"workerPoolId": in.WorkerPoolID, "workerGroup": in.WorkerGroup, "workerId": in.WorkerID}); err != nil {
		return err
	}
	wm := q.wm
	wm.mu.Lock()
	defer wm.mu.Unlock()
	wk := wm.workers[workerKey(in.WorkerPoolID, in.WorkerGroup, in.WorkerID)]
	if wk == nil || wk.State != workerRunning {
		return apiErrorf(codeResourceNotFound, "Worker %s/%s/%s is not running", in.WorkerPoolID, in.WorkerGroup, in.WorkerID)
	}
	if wk.Secret == "" || !secretEqual(in.Secret, wk.Secret) {
		return apiErrorf(codeInputError, "Could not reregister worker %s/%s/%s: bad secret", in.WorkerPoolID, in.WorkerGroup, in.WorkerID)
	}
	creds, secret, err := q.issueWorkerCredentials(wk, rq.now)
	if err != nil {
		return err
	}
	wk.Secret, wk.LastModified = secret, rq.now
	q.log.Info("worker reregistered", "workerPoolId", wk.PoolID, "workerGroup", wk.Group, "workerId", wk.ID, "expires", formatTime(wk.Expires))
	q.reply(w, http.StatusOK, map[string]any{"credentials": creds, "expires": formatTime(wk.Expires), "secret": secret})
	return nil
}

func (q *Queue) removeWorker(w http.ResponseWriter, rq *apiRequest) error {
	wm := q.wm
	wm.mu.Lock()
	defer wm.mu.Unlock()
	wk := wm.workers[workerKey(rq.params["workerPoolId"], rq.params["workerGroup"], rq.params["workerId"])]
	if wk == nil {
		return apiErrorf(codeResourceNotFound, "Worker not found")
	}
	wk.State, wk.Removed, wk.Secret, wk.LastModified = workerStopped, true, "", rq.now
	q.log.Info("worker removed", "workerPoolId", wk.PoolID, "workerGroup", wk.Group, "workerId", wk.ID)
	q.reply(w, http.StatusOK, map[string]any{})
	return nil
}

func (q *Queue) shouldWorkerTerminate(w http.ResponseWriter, rq *apiRequest) error {
	wm := q.wm
	wm.mu.Lock()
	defer wm.mu.Unlock()
	pool := rq.params["workerPoolId"]
	wk := wm.workers[workerKey(pool, rq.params["workerGroup"], rq.params["workerId"])]
	terminate, reason := false, "worker is running"
	switch {
	case wm.pools[pool] == nil:
		terminate, reason = true, "worker pool does not exist"
	case wk == nil:
		terminate, reason = true, "worker does not exist"
	case wk.Terminate:
		terminate, reason = true, wk.Reason
	case wk.State != workerRunning:
		terminate, reason = true, "worker is "+wk.State
	}
	if wk != nil {
		wk.LastChecked = rq.now
	}
	q.reply(w, http.StatusOK, map[string]any{"terminate": terminate, "reason": reason})
	return nil
}

// WorkerState is what the worker-manager subset knows of a worker.
type WorkerState struct {
	State string
	// Removed: removeWorker was called.
	Removed bool
	// Expires is when the last credentials handed out expire.
	Expires time.Time
}

// Worker returns the state of a worker ("" State when unknown).
func (q *Queue) Worker(workerPoolID, workerGroup, workerID string) WorkerState {
	wm := q.wm
	wm.mu.Lock()
	defer wm.mu.Unlock()
	wk := wm.workers[workerKey(workerPoolID, workerGroup, workerID)]
	if wk == nil {
		return WorkerState{}
	}
	return WorkerState{State: wk.State, Removed: wk.Removed, Expires: wk.Expires}
}

// RequestTermination makes shouldWorkerTerminate answer true, with
// reason, for a known worker (as the real service does when, say, its
// launch configuration is archived). It reports whether the worker is
// known.
func (q *Queue) RequestTermination(workerPoolID, workerGroup, workerID, reason string) bool {
	wm := q.wm
	wm.mu.Lock()
	defer wm.mu.Unlock()
	wk := wm.workers[workerKey(workerPoolID, workerGroup, workerID)]
	if wk == nil {
		return false
	}
	wk.Terminate, wk.Reason = true, reason
	return true
}
