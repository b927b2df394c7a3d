// Package vaulttest runs an in-process stand-in for HashiCorp Vault's HTTP
// API, for tests of the secrets Vault adapter.
//
// No Vault server can be installed on the machines this project builds and
// tests on (only the Go module proxy and Debian packages are reachable, and
// Vault is in neither), so this httptest server stands in for Vault. It
// follows Vault's documented wire format for what the adapter uses:
//
//   - KV version 2 at /v1/<mount>/: PUT/POST data/<path> ({"data":{...},
//     "options":{"cas":N}}), GET data/<path>[?version=N] (a deleted or
//     destroyed version answers 404 with its metadata and "data": null),
//     DELETE data/<path> (soft-deletes the latest version), POST
//     delete|undelete|destroy/<path> ({"versions":[...]}), LIST
//     metadata/<path>/ (verb LIST or GET ?list=true; 404 when empty), GET
//     metadata/<path>, DELETE metadata/<path> (every version and the
//     metadata), max_versions pruning (Options.MaxVersions, Vault's default
//     10);
//   - AppRole login at /v1/auth/approle/login returning auth.client_token
//     with a lease_duration;
//   - /v1/sys/health (200 unsealed, 503 sealed);
//   - X-Vault-Token (or Authorization: Bearer) on every other request:
//     missing, unknown or expired → 403 {"errors":["permission denied"]};
//   - switches: SetSealed (every request 503 {"errors":["Vault is sealed"]})
//     and SetUnavailable (connections are accepted and dropped), plus
//     RevokeTokens to force AppRole re-login, and Close for a server that is
//     gone.
//
// It is a test double, not a Vault: no policies, leases, namespaces,
// wrapping or persistence.
package vaulttest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Options tunes a Server. The zero value gives Vault's defaults.
type Options struct {
	// Mount is the KV v2 mount path. Default "secret".
	Mount string
	// MaxVersions is how many versions a key keeps. Default 10 (Vault's).
	MaxVersions int
	// TokenTTL is the lease_duration of AppRole tokens; they are refused
	// after it. Default 1h.
	TokenTTL time.Duration
}

// Server is a running fake Vault.
type Server struct {
	// URL is the server's address, for VaultConfig.Address.
	URL string
	// RootToken is always accepted.
	RootToken string
	// RoleID and SecretID are the AppRole credentials it accepts.
	RoleID   string
	SecretID string
	// Mount is the KV v2 mount path.
	Mount string

	srv         *httptest.Server
	maxVersions int
	tokenTTL    time.Duration

	mu          sync.Mutex
	sealed      bool
	unavailable bool
	tokens      map[string]time.Time // AppRole tokens → expiry
	logins      int
	kv          map[string]*entry
	requests    []string
}

type entry struct {
	current  int
	oldest   int
	created  time.Time
	updated  time.Time
	versions map[int]*version
}

type version struct {
	data      map[string]json.RawMessage // nil once destroyed
	created   time.Time
	deleted   time.Time
	destroyed bool
}

// Start runs a Server with default Options, closed at the end of the test.
func Start(t testing.TB) *Server { return StartWithOptions(t, Options{}) }

// StartWithOptions runs a Server with opts, closed at the end of the test.
func StartWithOptions(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Mount == "" {
		opts.Mount = "secret"
	}
	if opts.MaxVersions <= 0 {
		opts.MaxVersions = 10
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = time.Hour
	}
	s := &Server{
		RootToken:   "hvs.root-" + randomHex(12),
		RoleID:      "role-" + randomHex(8),
		SecretID:    "secret-id-" + randomHex(16),
		Mount:       strings.Trim(opts.Mount, "/"),
		maxVersions: opts.MaxVersions,
		tokenTTL:    opts.TokenTTL,
		tokens:      map[string]time.Time{},
		kv:          map[string]*entry{},
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	t.Cleanup(s.Close)
	return s
}

// Close stops the server; later requests fail to connect. Idempotent.
func (s *Server) Close() {
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// SetSealed makes every request answer 503 {"errors":["Vault is sealed"]}
// (sys/health answers 503 with "sealed": true) while on.
func (s *Server) SetSealed(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sealed = on
}

// SetUnavailable makes the server drop every connection without answering
// while on, as a crashed or partitioned Vault behind a load balancer.
func (s *Server) SetUnavailable(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unavailable = on
	if on {
		s.srv.CloseClientConnections()
	}
}

// RevokeTokens invalidates every AppRole token issued so far (the root
// token stays valid), as when a lease expires or an operator revokes it.
func (s *Server) RevokeTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.tokens)
}

// Logins returns how many successful AppRole logins the server answered.
func (s *Server) Logins() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logins
}

// Requests returns "METHOD /v1/path?query" of every request received so far.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErrors(w http.ResponseWriter, status int, msgs ...string) {
	if msgs == nil {
		msgs = []string{}
	}
	writeJSON(w, status, map[string]any{"errors": msgs})
}

// envelope is Vault's generic response body.
func envelope(data any) map[string]any {
	return map[string]any{
		"request_id":     randomHex(8),
		"lease_id":       "",
		"renewable":      false,
		"lease_duration": 0,
		"data":           data,
		"wrap_info":      nil,
		"warnings":       nil,
		"auth":           nil,
		"mount_type":     "kv",
	}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, r.Method+" "+r.URL.RequestURI())
	if s.unavailable {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
		writeErrors(w, http.StatusBadGateway, "upstream unavailable")
		return
	}
	p, ok := strings.CutPrefix(r.URL.Path, "/v1/")
	if !ok {
		writeErrors(w, http.StatusNotFound)
		return
	}
	if p == "sys/health" {
		s.health(w)
		return
	}
	if s.sealed {
		writeErrors(w, http.StatusServiceUnavailable, "Vault is sealed")
		return
	}
	if p == "auth/approle/login" {
		if r.Method != http.MethodPut && r.Method != http.MethodPost {
			writeErrors(w, http.StatusMethodNotAllowed, "unsupported operation")
			return
		}
		s.approleLogin(w, r)
		return
	}
	if !s.authorized(r) {
		writeErrors(w, http.StatusForbidden, "permission denied")
		return
	}
	rest, ok := strings.CutPrefix(p, s.Mount+"/")
	if !ok {
		writeErrors(w, http.StatusNotFound, "no handler for route \""+p+"\". route entry not found.")
		return
	}
	kind, key, _ := strings.Cut(rest, "/")
	method := r.Method
	if method == http.MethodGet && r.URL.Query().Get("list") == "true" {
		method = "LIST"
	}
	switch {
	case kind == "data" && (method == http.MethodPut || method == http.MethodPost):
		s.writeData(w, r, key)
	case kind == "data" && method == http.MethodGet:
		s.readData(w, r, key)
	case kind == "data" && method == http.MethodDelete:
		s.setDeleted(key, nil, true)
		w.WriteHeader(http.StatusNoContent)
	case (kind == "delete" || kind == "undelete" || kind == "destroy") && (method == http.MethodPut || method == http.MethodPost):
		s.versionsOp(w, r, kind, key)
	case kind == "metadata" && method == "LIST":
		s.list(w, key)
	case kind == "metadata" && method == http.MethodGet:
		s.readMetadata(w, key)
	case kind == "metadata" && method == http.MethodDelete:
		delete(s.kv, key)
		w.WriteHeader(http.StatusNoContent)
	default:
		writeErrors(w, http.StatusMethodNotAllowed, "unsupported operation")
	}
}

func (s *Server) health(w http.ResponseWriter) {
	body := map[string]any{
		"initialized": true, "sealed": s.sealed, "standby": false,
		"server_time_utc": time.Now().Unix(), "version": "vaulttest",
	}
	status := http.StatusOK
	if s.sealed {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, body)
}

func (s *Server) authorized(r *http.Request) bool {
	tok := r.Header.Get("X-Vault-Token")
	if tok == "" {
		tok, _ = strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	}
	if tok == "" {
		return false
	}
	if tok == s.RootToken {
		return true
	}
	exp, ok := s.tokens[tok]
	return ok && time.Now().Before(exp)
}

func (s *Server) approleLogin(w http.ResponseWriter, r *http.Request) {
	var in struct {
		RoleID   string `json:"role_id"`
		SecretID string `json:"secret_id"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&in); err != nil {
		writeErrors(w, http.StatusBadRequest, "failed to parse JSON input")
		return
	}
	if in.RoleID == "" {
		writeErrors(w, http.StatusBadRequest, "missing role_id")
		return
	}
	if in.RoleID != s.RoleID || in.SecretID != s.SecretID {
		writeErrors(w, http.StatusBadRequest, "invalid role or secret ID")
		return
	}
	tok := "hvs.approle-" + randomHex(16)
	s.tokens[tok] = time.Now().Add(s.tokenTTL)
	s.logins++
	body := envelope(nil)
	body["auth"] = map[string]any{
		"client_token":   tok,
		"accessor":       randomHex(12),
		"policies":       []string{"default", "agentidp"},
		"token_policies": []string{"default", "agentidp"},
		"metadata":       map[string]string{"role_name": "agentidp"},
		"lease_duration": int(s.tokenTTL / time.Second),
		"renewable":      true,
		"entity_id":      randomHex(8),
		"token_type":     "service",
		"orphan":         true,
	}
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) metadataOf(e *entry, n int) map[string]any {
	v := e.versions[n]
	del := ""
	if !v.deleted.IsZero() {
		del = v.deleted.Format(time.RFC3339Nano)
	}
	return map[string]any{
		"created_time":    v.created.Format(time.RFC3339Nano),
		"custom_metadata": nil,
		"deletion_time":   del,
		"destroyed":       v.destroyed,
		"version":         n,
	}
}

func (s *Server) writeData(w http.ResponseWriter, r *http.Request, key string) {
	if key == "" {
		writeErrors(w, http.StatusNotFound)
		return
	}
	var in struct {
		Data    map[string]json.RawMessage `json:"data"`
		Options struct {
			CAS *int `json:"cas"`
		} `json:"options"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&in); err != nil {
		writeErrors(w, http.StatusBadRequest, "failed to parse JSON input")
		return
	}
	if in.Data == nil {
		writeErrors(w, http.StatusBadRequest, "no data provided")
		return
	}
	e := s.kv[key]
	current := 0
	if e != nil {
		current = e.current
	}
	if in.Options.CAS != nil && *in.Options.CAS != current {
		writeErrors(w, http.StatusBadRequest, "check-and-set parameter did not match the current version")
		return
	}
	now := time.Now().UTC()
	if e == nil {
		e = &entry{oldest: 1, created: now, versions: map[int]*version{}}
		s.kv[key] = e
	}
	e.current++
	e.updated = now
	e.versions[e.current] = &version{data: in.Data, created: now}
	for e.current-e.oldest+1 > s.maxVersions {
		delete(e.versions, e.oldest)
		e.oldest++
	}
	writeJSON(w, http.StatusOK, envelope(s.metadataOf(e, e.current)))
}

func (s *Server) readData(w http.ResponseWriter, r *http.Request, key string) {
	e := s.kv[key]
	if e == nil {
		writeErrors(w, http.StatusNotFound)
		return
	}
	n := e.current
	if q := r.URL.Query().Get("version"); q != "" {
		v, err := strconv.Atoi(q)
		if err != nil || v < 0 {
			writeErrors(w, http.StatusBadRequest, "version must be a non-negative integer")
			return
		}
		if v > 0 {
			n = v
		}
	}
	v := e.versions[n]
	if v == nil {
		writeErrors(w, http.StatusNotFound)
		return
	}
	body := map[string]any{"data": v.data, "metadata": s.metadataOf(e, n)}
	if !v.deleted.IsZero() || v.destroyed {
		body["data"] = nil
		writeJSON(w, http.StatusNotFound, envelope(body))
		return
	}
	writeJSON(w, http.StatusOK, envelope(body))
}

// setDeleted marks versions (nil = the latest) deleted or undeleted.
func (s *Server) setDeleted(key string, versions []int, deleted bool) {
	e := s.kv[key]
	if e == nil {
		return
	}
	if versions == nil {
		versions = []int{e.current}
	}
	for _, n := range versions {
		if v := e.versions[n]; v != nil {
			if deleted {
				v.deleted = time.Now().UTC()
			} else {
				v.deleted = time.Time{}
			}
		}
	}
}

func (s *Server) versionsOp(w http.ResponseWriter, r *http.Request, kind, key string) {
	var in struct {
		Versions []int `json:"versions"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&in); err != nil || len(in.Versions) == 0 {
		writeErrors(w, http.StatusBadRequest, "no version number provided")
		return
	}
	switch kind {
	case "delete":
		s.setDeleted(key, in.Versions, true)
	case "undelete":
		s.setDeleted(key, in.Versions, false)
	case "destroy":
		if e := s.kv[key]; e != nil {
			for _, n := range in.Versions {
				if v := e.versions[n]; v != nil {
					v.destroyed, v.data = true, nil
				}
			}
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) list(w http.ResponseWriter, key string) {
	base := strings.Trim(key, "/")
	seen := map[string]bool{}
	keys := []string{}
	for p := range s.kv {
		rest := p
		if base != "" {
			var ok bool
			if rest, ok = strings.CutPrefix(p, base+"/"); !ok {
				continue
			}
		}
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			rest = rest[:i+1]
		}
		if rest != "" && !seen[rest] {
			seen[rest] = true
			keys = append(keys, rest)
		}
	}
	if len(keys) == 0 {
		writeErrors(w, http.StatusNotFound)
		return
	}
	slices.Sort(keys)
	writeJSON(w, http.StatusOK, envelope(map[string]any{"keys": keys}))
}

func (s *Server) readMetadata(w http.ResponseWriter, key string) {
	e := s.kv[key]
	if e == nil {
		writeErrors(w, http.StatusNotFound)
		return
	}
	versions := map[string]any{}
	for n := range e.versions {
		md := s.metadataOf(e, n)
		delete(md, "custom_metadata")
		delete(md, "version")
		versions[strconv.Itoa(n)] = md
	}
	writeJSON(w, http.StatusOK, envelope(map[string]any{
		"cas_required":         false,
		"created_time":         e.created.Format(time.RFC3339Nano),
		"current_version":      e.current,
		"custom_metadata":      nil,
		"delete_version_after": "0s",
		"max_versions":         0,
		"oldest_version":       e.oldest,
		"updated_time":         e.updated.Format(time.RFC3339Nano),
		"versions":             versions,
	}))
}
