package did_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/authn/authntest"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/jose"
	"github.com/agentidp/agentidp/libs/natsbus"
	"github.com/agentidp/agentidp/libs/natsbus/natstest"
	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/svcrun"
	"github.com/agentidp/agentidp/services/did"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

const host = "idp.example.com%3A8443"

type harness struct {
	handler http.Handler
	codec   *authn.Codec
	js      jetstream.JetStream
	db      *sqlstore.DB
	svc     *did.Service
}

func newHarness(t *testing.T) *harness { return newHarnessWith(t, nil, nil) }

// newHarnessWith runs the service over db (a fresh SQLite file when nil)
// with the test configuration changed by configure.
func newHarnessWith(t *testing.T, db *sqlstore.DB, configure func(*did.Config)) *harness {
	t.Helper()
	return newHarnessLogged(t, db, configure, nil)
}

// newHarnessLogged is newHarnessWith with the service logging to logger
// (discarded when nil).
func newHarnessLogged(t *testing.T, db *sqlstore.DB, configure func(*did.Config), logger *slog.Logger) *harness {
	t.Helper()
	ctx := context.Background()
	if db == nil {
		var err error
		db, err = sqlstore.Open(ctx, sqlstore.Config{Driver: sqlstore.SQLite, URL: filepath.Join(t.TempDir(), "did.db")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
	}
	srv := natstest.Start(t)
	nc, js := srv.Connect(t)
	codec, err := authn.NewCodec(bytes.Repeat([]byte("k"), 32))
	if err != nil {
		t.Fatal(err)
	}
	cfg := did.DefaultConfig()
	cfg.BaseURL = "https://idp.example.com:8443"
	cfg.KeyEncryptionKey = bytes.Repeat([]byte{1}, 32)
	if configure != nil {
		configure(&cfg)
	}
	svc, err := did.New(ctx, cfg, &svcrun.Deps{Service: "did", Logger: logger, Registry: prometheus.NewRegistry(), DB: db, NATS: nc, JS: js, Codec: codec})
	if err != nil {
		t.Fatalf("did.New = %v", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := svc.Run(runCtx); err != nil {
			t.Errorf("Run = %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return &harness{handler: svc.Handler(), codec: codec, js: js, db: db, svc: svc}
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (h *harness) do(t *testing.T, id *authn.Identity, method, path string) response {
	t.Helper()
	req := authntest.Request(t, h.codec, id, method, path, "")
	rec := httptest.NewRecorder()
	h.handler.ServeHTTP(rec, req)
	raw, _ := io.ReadAll(rec.Body)
	r := response{status: rec.Code, header: rec.Header(), raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

// agentEvent is an agent event as the token service publishes it, for an
// agent allowed agents:read.
func agentEvent(t *testing.T, typ events.Type, agentID, orgID, status string, at time.Time) events.Envelope {
	t.Helper()
	return agentEventScopes(t, typ, agentID, orgID, status, at, []string{"agents:read"})
}

// agentEventScopes is agentEvent for an agent allowed scopes (nil: an event
// that does not carry them).
func agentEventScopes(t *testing.T, typ events.Type, agentID, orgID, status string, at time.Time, scopes []string) events.Envelope {
	t.Helper()
	e, err := events.New(typ, "token", orgID, agentID, events.AgentData{
		AgentID: agentID, OrganizationID: orgID, Email: "bot@example.com", AgentType: "assistant", Status: status, Scopes: scopes, At: at,
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (h *harness) publish(t *testing.T, evs ...events.Envelope) {
	t.Helper()
	raw := make([]natsbus.RawMessage, len(evs))
	for i, e := range evs {
		m, err := natsbus.Raw(e)
		if err != nil {
			t.Fatal(err)
		}
		raw[i] = m
	}
	if err := natsbus.PublishRaw(context.Background(), h.js, raw); err != nil {
		t.Fatal(err)
	}
}

// waitStatus polls path until it answers want (events are asynchronous).
func (h *harness) waitStatus(t *testing.T, path string, want int) response {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := h.do(t, nil, http.MethodGet, path)
		if r.status == want || time.Now().After(deadline) {
			if r.status != want {
				t.Fatalf("GET %s = %d %s; want %d", path, r.status, r.raw, want)
			}
			return r
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// createAgent publishes agent.created and waits for its DID document.
func (h *harness) createAgent(t *testing.T, orgID string) (string, response) {
	t.Helper()
	id := uuid.NewString()
	h.publish(t, agentEvent(t, events.AgentCreated, id, orgID, "active", time.Now().UTC()))
	return id, h.waitStatus(t, "/agents/"+id+"/did.json", http.StatusOK)
}

var (
	didRe     = regexp.MustCompile(`^did:[a-z0-9]+:[A-Za-z0-9._:%-]*[A-Za-z0-9._%-]$`)
	didURLRe  = regexp.MustCompile(`^(did:[a-z0-9]+:[A-Za-z0-9._:%-]+)#([A-Za-z0-9._~-]+)$`)
	b64urlRe  = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)
	didCtx    = "https://www.w3.org/ns/did/v1"
	jwsCtx    = "https://w3id.org/security/suites/jws-2020/v1"
	allowedVM = map[string]bool{"id": true, "type": true, "controller": true, "publicKeyJwk": true}
)

// validateDIDDocument checks doc against the DID Core 1.0 data model (and
// the JsonWebKey2020 suite) and returns the ids of the listed methods and
// of the authentication references.
func validateDIDDocument(t *testing.T, doc map[string]any, wantID string) (methods, auth []string) {
	t.Helper()
	ctx, _ := doc["@context"].([]any)
	if len(ctx) < 2 || ctx[0] != didCtx || ctx[1] != jwsCtx {
		t.Errorf("Got(@context) = %v; want [%s %s ...] with the DID v1 context first", doc["@context"], didCtx, jwsCtx)
	}
	id, _ := doc["id"].(string)
	if id != wantID || !didRe.MatchString(id) {
		t.Errorf("Got(id) = %q; want the DID %q", id, wantID)
	}
	if c, ok := doc["controller"]; ok {
		if s, _ := c.(string); !didRe.MatchString(s) {
			t.Errorf("Got(controller) = %v; want a DID", c)
		}
	}
	vms, ok := doc["verificationMethod"].([]any)
	if !ok {
		t.Fatalf("Got(verificationMethod) = %v; want an array", doc["verificationMethod"])
	}
	seen := map[string]bool{}
	for _, raw := range vms {
		vm, _ := raw.(map[string]any)
		for k := range vm {
			if !allowedVM[k] {
				t.Errorf("Got(verification method member %q); want only id, type, controller, publicKeyJwk", k)
			}
		}
		vmID, _ := vm["id"].(string)
		m := didURLRe.FindStringSubmatch(vmID)
		if m == nil || m[1] != id {
			t.Errorf("Got(verificationMethod.id) = %q; want a DID URL under %s with a fragment", vmID, id)
		}
		if seen[vmID] {
			t.Errorf("Got(duplicate verificationMethod id %q)", vmID)
		}
		seen[vmID] = true
		methods = append(methods, vmID)
		if vm["type"] != "JsonWebKey2020" {
			t.Errorf("Got(type) = %v; want JsonWebKey2020", vm["type"])
		}
		if c, _ := vm["controller"].(string); !didRe.MatchString(c) {
			t.Errorf("Got(verificationMethod.controller) = %v; want a DID", vm["controller"])
		}
		jwk, _ := vm["publicKeyJwk"].(map[string]any)
		x, _ := jwk["x"].(string)
		y, _ := jwk["y"].(string)
		ec := jwk["kty"] == "EC" && jwk["crv"] == "P-256" && b64urlRe.MatchString(x) && b64urlRe.MatchString(y)
		// Agent-held keys may also be Ed25519 (still JsonWebKey2020).
		okp := jwk["kty"] == "OKP" && jwk["crv"] == "Ed25519" && b64urlRe.MatchString(x) && jwk["y"] == nil
		if !ec && !okp {
			t.Errorf("Got(publicKeyJwk) = %v; want an EC P-256 or OKP Ed25519 public JWK", jwk)
		}
		for _, m := range []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"} {
			if _, private := jwk[m]; private {
				t.Errorf("Got(publicKeyJwk.%s) present; private key material must never be published", m)
			}
		}
		var pub jose.JWK
		b, _ := json.Marshal(jwk)
		_ = json.Unmarshal(b, &pub)
		k, err := pub.PublicKey()
		_, isEC := k.(*ecdsa.PublicKey)
		_, isEd := k.(ed25519.PublicKey)
		if err != nil || (ec && !isEC) || (okp && !isEd) {
			t.Errorf("JWK.PublicKey() = %T, %v; want a valid P-256 point or Ed25519 key", k, err)
		}
		if tp, _ := jose.Thumbprint(pub); "#"+tp != vmID[len(id):] {
			t.Errorf("Got(fragment) = %s; want the RFC 7638 thumbprint %s", vmID[len(id):], tp)
		}
	}
	for _, rel := range []string{"authentication", "assertionMethod"} {
		refs, ok := doc[rel].([]any)
		if !ok {
			t.Errorf("Got(%s) = %v; want an array", rel, doc[rel])
		}
		for _, r := range refs {
			s, _ := r.(string)
			if !seen[s] {
				t.Errorf("Got(%s reference %q); want it to resolve to a listed verification method", rel, s)
			}
			if rel == "authentication" {
				auth = append(auth, s)
			}
		}
	}
	if svcs, ok := doc["service"]; ok {
		list, _ := svcs.([]any)
		for _, raw := range list {
			s, _ := raw.(map[string]any)
			if sid, _ := s["id"].(string); !strings.HasPrefix(sid, id+"#") || s["type"] == "" || !strings.HasPrefix(s["serviceEndpoint"].(string), "https://") {
				t.Errorf("Got(service) = %v; want id under the DID, a type and an https endpoint", s)
			}
		}
	}
	return methods, auth
}

func TestInstanceDocument(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := h.do(t, nil, http.MethodGet, "/.well-known/did.json")
	if r.status != http.StatusOK {
		t.Fatalf("GET /.well-known/did.json = %d %s; want 200", r.status, r.raw)
	}
	if got := r.header.Get("Cache-Control"); !strings.Contains(got, "max-age=60") {
		t.Errorf("Got(Cache-Control) = %q; want max-age=60", got)
	}
	methods, auth := validateDIDDocument(t, r.body, "did:web:"+host)
	if len(methods) != 1 || len(auth) != 1 {
		t.Errorf("Got(methods, auth) = %v, %v; want one key", methods, auth)
	}
}

func TestAgentDIDLifecycle(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	org := uuid.NewString()
	id, r := h.createAgent(t, org)
	agentDID := "did:web:" + host + ":agents:" + id
	methods, auth := validateDIDDocument(t, r.body, agentDID)
	if len(methods) != 1 || len(auth) != 1 {
		t.Fatalf("Got(methods, auth) = %v, %v; want one active key", methods, auth)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/did+ld+json" {
		t.Errorf("Got(Content-Type) = %q; want application/did+ld+json", ct)
	}
	seed := h.do(t, nil, http.MethodGet, "/api/v1/agents/"+id+"/did")
	if seed.status != http.StatusOK || seed.raw != r.raw {
		t.Errorf("GET seed path = %d %s; want the same document as the did:web path", seed.status, seed.raw)
	}

	reader := &authn.Identity{Subject: uuid.NewString(), OrgID: uuid.NewString(), Scopes: []string{"agents:read"}}
	res := h.do(t, reader, http.MethodGet, "/api/v1/agents/"+id+"/did/resolve")
	if res.status != http.StatusOK || res.header.Get("Content-Type") != `application/ld+json;profile="https://w3id.org/did-resolution"` {
		t.Fatalf("resolve = %d %q %s; want 200 with the DID resolution content type", res.status, res.header.Get("Content-Type"), res.raw)
	}
	if res.body["@context"] != "https://w3id.org/did-resolution/v1" {
		t.Errorf("Got(@context) = %v; want the DID resolution context", res.body["@context"])
	}
	validateDIDDocument(t, res.body["didDocument"].(map[string]any), agentDID)
	meta := res.body["didDocumentMetadata"].(map[string]any)
	if meta["deactivated"] != false || meta["created"] == nil || meta["updated"] == nil {
		t.Errorf("Got(didDocumentMetadata) = %v; want created, updated, deactivated false", meta)
	}
	if rm := res.body["didResolutionMetadata"].(map[string]any); rm["contentType"] != "application/did+ld+json" {
		t.Errorf("Got(didResolutionMetadata) = %v; want contentType application/did+ld+json", rm)
	}

	card := h.do(t, nil, http.MethodGet, "/api/v1/agents/"+id+"/did/card")
	if card.status != http.StatusOK || card.body["did"] != agentDID || card.body["name"] != "bot@example.com" ||
		card.body["agentType"] != "assistant" || card.body["identityProvider"] != "did:web:"+host || card.body["issuedAt"] == nil {
		t.Errorf("GET card = %d %s; want the agent card", card.status, card.raw)
	}

	// Suspended: still resolvable, and the metadata says so.
	h.publish(t, agentEvent(t, events.AgentSuspended, id, org, "suspended", time.Now().UTC()))
	deadline := time.Now().Add(10 * time.Second)
	for {
		res = h.do(t, reader, http.MethodGet, "/api/v1/agents/"+id+"/did/resolve")
		meta, _ = res.body["didDocumentMetadata"].(map[string]any)
		if meta["agentStatus"] == "suspended" || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if res.status != http.StatusOK || meta["agentStatus"] != "suspended" || meta["deactivated"] != false || res.body["didDocument"] == nil {
		t.Errorf("resolve(suspended) = %d %s; want 200, the document, agentStatus suspended", res.status, res.raw)
	}

	// Decommissioned: 410 everywhere, deactivated in the resolution result.
	h.publish(t, agentEvent(t, events.AgentDecommissioned, id, org, "decommissioned", time.Now().UTC()))
	h.waitStatus(t, "/agents/"+id+"/did.json", http.StatusGone)
	for _, p := range []string{"/api/v1/agents/" + id + "/did", "/api/v1/agents/" + id + "/did/card"} {
		if r := h.do(t, nil, http.MethodGet, p); r.status != http.StatusGone || r.body["code"] != "AGENT_DECOMMISSIONED" {
			t.Errorf("GET %s = %d %s; want 410 AGENT_DECOMMISSIONED", p, r.status, r.raw)
		}
	}
	res = h.do(t, reader, http.MethodGet, "/api/v1/agents/"+id+"/did/resolve")
	meta, _ = res.body["didDocumentMetadata"].(map[string]any)
	if res.status != http.StatusGone || meta["deactivated"] != true || res.body["didDocument"] != nil {
		t.Errorf("resolve(decommissioned) = %d %s; want 410, deactivated true, no document", res.status, res.raw)
	}
	// A late reactivation event cannot bring a decommissioned agent back.
	h.publish(t, agentEvent(t, events.AgentReactivated, id, org, "active", time.Now().UTC().Add(time.Minute)))
	time.Sleep(300 * time.Millisecond)
	if r := h.do(t, nil, http.MethodGet, "/agents/"+id+"/did.json"); r.status != http.StatusGone {
		t.Errorf("GET after reactivation event = %d; want 410 (decommissioning is terminal)", r.status)
	}
}

func TestKeyCreationIdempotentUnderRedelivery(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	org := uuid.NewString()
	id := uuid.NewString()
	created := agentEvent(t, events.AgentCreated, id, org, "active", time.Now().UTC())
	for range 3 {
		if err := h.svc.HandleEvent(context.Background(), created); err != nil {
			t.Fatalf("HandleEvent = %v", err)
		}
	}
	// The same event redelivered through the bus (a copy under a new
	// message id, as a republish would be) and a later update.
	copyEv := created
	copyEv.ID = uuid.NewString()
	h.publish(t, copyEv, agentEvent(t, events.AgentUpdated, id, org, "active", time.Now().UTC()))
	time.Sleep(500 * time.Millisecond)
	var keys, createdEvents int
	if err := h.db.QueryRowContext(context.Background(), "SELECT COUNT(*) FROM agent_did_keys WHERE agent_id = ?", id).Scan(&keys); err != nil {
		t.Fatal(err)
	}
	if err := h.db.QueryRowContext(context.Background(), "SELECT COUNT(*) FROM outbox WHERE subject = ?", events.DIDCreated.Subject()).Scan(&createdEvents); err != nil {
		t.Fatal(err)
	}
	if keys != 1 || createdEvents != 1 {
		t.Errorf("Got(keys, did.created events) = %d, %d; want 1, 1", keys, createdEvents)
	}
}

func TestRotation(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	org := uuid.NewString()
	id, before := h.createAgent(t, org)
	oldMethods, _ := validateDIDDocument(t, before.body, "did:web:"+host+":agents:"+id)
	path := "/api/v1/agents/" + id + "/did/rotate"

	cases := []struct {
		name   string
		id     *authn.Identity
		path   string
		status int
	}{
		{"no context", nil, path, http.StatusUnauthorized},
		{"read scope only", &authn.Identity{Subject: "s", OrgID: org, Scopes: []string{"agents:read"}}, path, http.StatusForbidden},
		{"other organisation", &authn.Identity{Subject: "s", OrgID: uuid.NewString(), Scopes: []string{"agents:write"}}, path, http.StatusNotFound},
		{"unknown agent", &authn.Identity{Subject: "s", OrgID: org, Scopes: []string{"agents:write"}}, "/api/v1/agents/" + uuid.NewString() + "/did/rotate", http.StatusNotFound},
		{"malformed id", &authn.Identity{Subject: "s", OrgID: org, Scopes: []string{"agents:write"}}, "/api/v1/agents/nope/did/rotate", http.StatusNotFound},
	}
	for _, tc := range cases {
		if r := h.do(t, tc.id, http.MethodPost, tc.path); r.status != tc.status {
			t.Errorf("%s: POST rotate = %d %s; want %d", tc.name, r.status, r.raw, tc.status)
		}
	}

	// The agent is allowed agents:read: the writer must hold it too
	// (privilege_test.go).
	writer := &authn.Identity{Subject: "s", OrgID: org, Scopes: []string{"agents:read", "agents:write"}}
	r := h.do(t, writer, http.MethodPost, path)
	if r.status != http.StatusOK {
		t.Fatalf("POST rotate = %d %s; want 200", r.status, r.raw)
	}
	newKID, _ := r.body["kid"].(string)
	if newKID == "" || "did:web:"+host+":agents:"+id+"#"+r.body["previousKid"].(string) != oldMethods[0] {
		t.Errorf("Got(rotation) = %s; want a new kid and the old one as previousKid", r.raw)
	}
	after := h.do(t, nil, http.MethodGet, "/agents/"+id+"/did.json")
	methods, auth := validateDIDDocument(t, after.body, "did:web:"+host+":agents:"+id)
	if len(methods) != 2 || len(auth) != 1 || !strings.HasSuffix(auth[0], "#"+newKID) || methods[0] != oldMethods[0] {
		t.Errorf("Got(methods, authentication) = %v, %v; want old and new listed, only the new one authenticating", methods, auth)
	}
	var rotated int
	if err := h.db.QueryRowContext(context.Background(), "SELECT COUNT(*) FROM outbox WHERE subject = ?", events.DIDKeyRotated.Subject()).Scan(&rotated); err != nil {
		t.Fatal(err)
	}
	if rotated != 1 {
		t.Errorf("Got(did.key_rotated events) = %d; want 1", rotated)
	}
}

func TestNotFoundAndAuth(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	unknown := uuid.NewString()
	reader := &authn.Identity{Subject: "s", OrgID: "o", Scopes: []string{"agents:read"}}
	cases := []struct {
		name   string
		id     *authn.Identity
		path   string
		status int
	}{
		{"unknown did.json", nil, "/agents/" + unknown + "/did.json", http.StatusNotFound},
		{"unknown seed path", nil, "/api/v1/agents/" + unknown + "/did", http.StatusNotFound},
		{"unknown card", nil, "/api/v1/agents/" + unknown + "/did/card", http.StatusNotFound},
		{"malformed id", nil, "/agents/x'--/did.json", http.StatusNotFound},
		{"resolve without context", nil, "/api/v1/agents/" + unknown + "/did/resolve", http.StatusUnauthorized},
		{"resolve without scope", &authn.Identity{Subject: "s", OrgID: "o", Scopes: []string{"tokens:read"}}, "/api/v1/agents/" + unknown + "/did/resolve", http.StatusForbidden},
		{"resolve unknown", reader, "/api/v1/agents/" + unknown + "/did/resolve", http.StatusNotFound},
		{"unrouted path needs context", nil, "/api/v1/agents/" + unknown + "/other", http.StatusUnauthorized},
	}
	for _, tc := range cases {
		if r := h.do(t, tc.id, http.MethodGet, tc.path); r.status != tc.status {
			t.Errorf("%s: GET %s = %d %s; want %d", tc.name, tc.path, r.status, r.raw, tc.status)
		}
	}
}
