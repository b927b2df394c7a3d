package federation_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/authn/authntest"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/jose"
	"github.com/agentidp/agentidp/libs/natsbus/natstest"
	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/svcrun"
	"github.com/agentidp/agentidp/services/federation"
	"github.com/agentidp/agentidp/services/federation/internal/partnertest"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
)

const audience = "https://idp.agentidp.test"

type harness struct {
	handler http.Handler
	codec   *authn.Codec
	db      *sqlstore.DB
	svc     *federation.Service
	clock   *testClock
}

// testClock is the service's clock in tests: it starts at the wall clock's
// now and moves only when told, so that intervals (JWKS minimum interval,
// partner expiry) pass exactly when a test says, however slow the machine.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newHarness(t *testing.T, allow []netip.Prefix) *harness {
	t.Helper()
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, sqlstore.Config{Driver: sqlstore.SQLite, URL: filepath.Join(t.TempDir(), "federation.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	srv := natstest.Start(t)
	nc, js := srv.Connect(t)
	codec, err := authn.NewCodec(bytes.Repeat([]byte("k"), 32))
	if err != nil {
		t.Fatal(err)
	}
	cfg := federation.DefaultConfig()
	cfg.Audience = audience
	cfg.AllowInsecure = true // the in-test partner speaks http
	cfg.AllowPrivate = allow
	cfg.JWKSMinInterval = 200 * time.Millisecond
	clock := &testClock{now: time.Now()}
	cfg.Now = clock.Now
	svc, err := federation.New(ctx, cfg, &svcrun.Deps{Service: "federation", Registry: prometheus.NewRegistry(), DB: db, NATS: nc, JS: js, Codec: codec})
	if err != nil {
		t.Fatalf("federation.New = %v", err)
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
	return &harness{handler: svc.Handler(), codec: codec, db: db, svc: svc, clock: clock}
}

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

var (
	adminID  = &authn.Identity{Subject: "op", OrgID: uuid.NewString(), Scopes: []string{"admin:orgs"}}
	readerID = &authn.Identity{Subject: "agent", OrgID: uuid.NewString(), Scopes: []string{"agents:read"}}
)

type response struct {
	status int
	body   map[string]any
	raw    string
}

func (h *harness) do(t *testing.T, id *authn.Identity, method, path, body string) response {
	t.Helper()
	req := authntest.Request(t, h.codec, id, method, path, body)
	rec := httptest.NewRecorder()
	h.handler.ServeHTTP(rec, req)
	raw, _ := io.ReadAll(rec.Body)
	r := response{status: rec.Code, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

func jsonBody(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (h *harness) register(t *testing.T, idp *partnertest.IdP, extra map[string]any) map[string]any {
	t.Helper()
	body := map[string]any{"name": "Partner IdP", "issuer": idp.Issuer, "jwksUri": idp.JWKSURI}
	for k, v := range extra {
		body[k] = v
	}
	r := h.do(t, adminID, http.MethodPost, "/api/v1/federation/trust", jsonBody(t, body))
	if r.status != http.StatusCreated {
		t.Fatalf("POST /federation/trust = %d %s; want 201", r.status, r.raw)
	}
	return r.body
}

func (h *harness) verify(t *testing.T, id *authn.Identity, token string) response {
	t.Helper()
	r := h.do(t, id, http.MethodPost, "/api/v1/federation/verify", jsonBody(t, map[string]string{"token": token}))
	if r.status >= 500 {
		t.Fatalf("POST /federation/verify = %d %s; never 5xx on a token", r.status, r.raw)
	}
	return r
}

func expectValid(t *testing.T, name string, r response, valid bool, reason string) {
	t.Helper()
	if r.status != http.StatusOK || r.body["valid"] != valid || (reason != "" && r.body["reason"] != reason) {
		t.Errorf("%s: verify = %d %s; want 200 valid=%v reason=%q", name, r.status, r.raw, valid, reason)
	}
}

func TestPartnerRegistry(t *testing.T) {
	t.Parallel()
	h := newHarness(t, loopback)
	idp := partnertest.Start(t)
	org := uuid.NewString()
	p := h.register(t, idp, map[string]any{"allowedOrganizations": []string{org}, "expiresAt": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)})
	for _, k := range []string{"id", "name", "issuer", "jwks_uri", "allowed_organizations", "status", "expires_at", "created_at", "updated_at", "audience"} {
		if _, ok := p[k]; !ok {
			t.Errorf("Got(partner) = %v; want member %q", p, k)
		}
	}
	if p["status"] != "active" || p["issuer"] != idp.Issuer || p["audience"] != audience || fmt.Sprint(p["allowed_organizations"]) != "["+org+"]" {
		t.Errorf("Got(partner) = %v; want active, the issuer, the default audience, the organisation", p)
	}
	id := p["id"].(string)

	r := h.do(t, adminID, http.MethodPost, "/api/v1/federation/trust", jsonBody(t, map[string]any{"name": "Again", "issuer": idp.Issuer, "jwksUri": idp.JWKSURI}))
	if r.status != http.StatusConflict || r.body["code"] != "PARTNER_ALREADY_EXISTS" {
		t.Errorf("POST duplicate issuer = %d %s; want 409 PARTNER_ALREADY_EXISTS", r.status, r.raw)
	}

	garbage := partnertest.Start(t)
	garbage.SetMode(partnertest.ModeGarbage)
	empty := partnertest.Start(t)
	empty.SetMode(partnertest.ModeEmpty)
	valid := func(mod func(m map[string]any)) string {
		m := map[string]any{"name": "New partner", "issuer": "https://new.example", "jwksUri": idp.JWKSURI}
		mod(m)
		return jsonBody(t, m)
	}
	cases := []struct {
		name   string
		id     *authn.Identity
		body   string
		status int
	}{
		{"no context", nil, valid(func(map[string]any) {}), http.StatusUnauthorized},
		{"agents:read only", readerID, valid(func(map[string]any) {}), http.StatusForbidden},
		{"garbage JWKS", adminID, valid(func(m map[string]any) { m["jwksUri"] = garbage.JWKSURI }), http.StatusBadRequest},
		{"empty JWKS", adminID, valid(func(m map[string]any) { m["jwksUri"] = empty.JWKSURI }), http.StatusBadRequest},
		{"name too short", adminID, valid(func(m map[string]any) { m["name"] = "x" }), http.StatusBadRequest},
		{"name too long", adminID, valid(func(m map[string]any) { m["name"] = strings.Repeat("n", 101) }), http.StatusBadRequest},
		{"issuer not a URL", adminID, valid(func(m map[string]any) { m["issuer"] = "not a url" }), http.StatusBadRequest},
		{"issuer ftp", adminID, valid(func(m map[string]any) { m["issuer"] = "ftp://x.example" }), http.StatusBadRequest},
		{"issuer with fragment", adminID, valid(func(m map[string]any) { m["issuer"] = "https://x.example#f" }), http.StatusBadRequest},
		{"jwksUri relative", adminID, valid(func(m map[string]any) { m["jwksUri"] = "/jwks" }), http.StatusBadRequest},
		{"jwksUri metadata address", adminID, valid(func(m map[string]any) { m["jwksUri"] = "http://169.254.169.254/jwks" }), http.StatusBadRequest},
		{"organisation not a uuid", adminID, valid(func(m map[string]any) { m["allowedOrganizations"] = []string{"acme"} }), http.StatusBadRequest},
		{"expiry in the past", adminID, valid(func(m map[string]any) { m["expiresAt"] = "2020-01-01T00:00:00Z" }), http.StatusBadRequest},
		{"expiry not RFC 3339", adminID, valid(func(m map[string]any) { m["expiresAt"] = "tomorrow" }), http.StatusBadRequest},
		{"empty audience", adminID, valid(func(m map[string]any) { m["audience"] = "" }), http.StatusBadRequest},
		{"bad subject claim", adminID, valid(func(m map[string]any) { m["claimMapping"] = map[string]any{"subjectClaim": "a b"} }), http.StatusBadRequest},
		{"agent map value not a uuid", adminID, valid(func(m map[string]any) { m["claimMapping"] = map[string]any{"agentMap": map[string]string{"s": "x"}} }), http.StatusBadRequest},
		{"unknown field", adminID, valid(func(m map[string]any) { m["secret"] = "x" }), http.StatusBadRequest},
		{"wrong type", adminID, `{"name":1}`, http.StatusBadRequest},
	}
	for _, tc := range cases {
		if r := h.do(t, tc.id, http.MethodPost, "/api/v1/federation/trust", tc.body); r.status != tc.status {
			t.Errorf("%s: POST /federation/trust = %d %s; want %d", tc.name, r.status, r.raw, tc.status)
		}
	}

	r = h.do(t, adminID, http.MethodGet, "/api/v1/federation/partners", "")
	if r.status != http.StatusOK || r.body["total"] != 1.0 {
		t.Errorf("GET partners = %d %s; want the one partner (failed registrations stored nothing)", r.status, r.raw)
	}
	if r := h.do(t, readerID, http.MethodGet, "/api/v1/federation/partners", ""); r.status != http.StatusForbidden {
		t.Errorf("GET partners as agents:read = %d; want 403", r.status)
	}
	if r := h.do(t, adminID, http.MethodGet, "/api/v1/federation/partners/"+id, ""); r.status != http.StatusOK || r.body["id"] != id {
		t.Errorf("GET partner = %d %s; want it", r.status, r.raw)
	}
	r = h.do(t, adminID, http.MethodPatch, "/api/v1/federation/partners/"+id, `{"name":"Renamed","status":"suspended","expiresAt":null,"allowedOrganizations":[]}`)
	if r.status != http.StatusOK || r.body["name"] != "Renamed" || r.body["status"] != "suspended" || r.body["expires_at"] != nil {
		t.Errorf("PATCH = %d %s; want renamed, suspended, no expiry", r.status, r.raw)
	}
	for _, tc := range []struct{ name, body string }{
		{"status expired is derived", `{"status":"expired"}`},
		{"garbage JWKS", `{"jwksUri":"` + garbage.JWKSURI + `"}`},
		{"unknown field", `{"issuer":"https://other"}`},
	} {
		if r := h.do(t, adminID, http.MethodPatch, "/api/v1/federation/partners/"+id, tc.body); r.status != http.StatusBadRequest {
			t.Errorf("%s: PATCH = %d %s; want 400", tc.name, r.status, r.raw)
		}
	}
	if r := h.do(t, adminID, http.MethodGet, "/api/v1/federation/partners/"+id, ""); r.body["jwks_uri"] != idp.JWKSURI {
		t.Errorf("Got(jwks_uri after refused PATCH) = %v; want unchanged", r.body["jwks_uri"])
	}
	if r := h.do(t, adminID, http.MethodDelete, "/api/v1/federation/partners/"+id, ""); r.status != http.StatusNoContent {
		t.Errorf("DELETE = %d %s; want 204", r.status, r.raw)
	}
	for _, path := range []string{"/api/v1/federation/partners/" + id, "/api/v1/federation/partners/not-a-uuid"} {
		if r := h.do(t, adminID, http.MethodGet, path, ""); r.status != http.StatusNotFound || r.body["code"] != "PARTNER_NOT_FOUND" {
			t.Errorf("GET %s = %d %s; want 404 PARTNER_NOT_FOUND", path, r.status, r.raw)
		}
	}
	var n int
	if err := h.db.QueryRowContext(context.Background(), "SELECT COUNT(*) FROM outbox WHERE subject IN (?, ?, ?)",
		events.FederationPartnerAdded.Subject(), events.FederationPartnerUpdated.Subject(), events.FederationPartnerRemoved.Subject()).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("Got(partner events) = %d; want 3 (added, updated, removed)", n)
	}
}

func noneToken(t *testing.T, kid, iss string) string {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	hdr := enc([]byte(`{"alg":"none","kid":"` + kid + `"}`))
	payload := enc([]byte(fmt.Sprintf(`{"iss":%q,"aud":%q,"exp":%d}`, iss, audience, time.Now().Add(time.Hour).Unix())))
	return hdr + "." + payload + "."
}

func TestVerify(t *testing.T) {
	t.Parallel()
	h := newHarness(t, loopback)
	idp := partnertest.Start(t)
	p := h.register(t, idp, nil)
	key := idp.Key(0)
	claims := func(mod func(m map[string]any)) map[string]any {
		m := map[string]any{"iss": idp.Issuer, "aud": audience, "sub": "partner-agent", "exp": time.Now().Add(time.Hour).Unix()}
		mod(m)
		return m
	}

	r := h.verify(t, readerID, idp.Token(t, audience, "partner-agent"))
	expectValid(t, "good token", r, true, "")
	if r.body["partnerId"] != p["id"] || r.body["issuer"] != idp.Issuer || r.body["claims"].(map[string]any)["sub"] != "partner-agent" {
		t.Errorf("Got(verify) = %s; want partnerId, issuer and claims", r.raw)
	}

	other := partnertest.Start(t)
	cases := []struct {
		name, token, reason string
	}{
		{"unknown issuer", other.Token(t, audience, "x"), "unknown issuer"},
		{"iss of a partner, key of another", partnertest.Sign(t, other.Key(0), claims(func(map[string]any) {})), "unknown signing key"},
		{"wrong audience", partnertest.Sign(t, key, claims(func(m map[string]any) { m["aud"] = "https://someone-else" })), "audience mismatch"},
		{"no audience", partnertest.Sign(t, key, claims(func(m map[string]any) { delete(m, "aud") })), "audience mismatch"},
		{"expired", partnertest.Sign(t, key, claims(func(m map[string]any) { m["exp"] = time.Now().Add(-time.Hour).Unix() })), "token expired"},
		{"no exp", partnertest.Sign(t, key, claims(func(m map[string]any) { m["exp"] = 0 })), "token has no exp"},
		{"alg none", noneToken(t, key.KID, idp.Issuer), "algorithm not allowed"},
		{"tampered payload", func() string {
			parts := strings.Split(idp.Token(t, audience, "a"), ".")
			parts[1] = base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf(`{"iss":%q,"aud":%q,"sub":"admin","exp":%d}`, idp.Issuer, audience, time.Now().Add(time.Hour).Unix())))
			return strings.Join(parts, ".")
		}(), "invalid signature"},
		{"empty", "", "malformed token"},
		{"garbage", "not.a.jwt", "malformed token"},
		{"one segment", "abc", "malformed token"},
		{"huge", strings.Repeat("a", 9000), "malformed token"},
		{"binary", "\x00\xff.\x01.\x02", "malformed token"},
	}
	for _, tc := range cases {
		expectValid(t, tc.name, h.verify(t, readerID, tc.token), false, tc.reason)
	}
	for _, tc := range []struct {
		name, body string
		status     int
	}{
		{"not JSON", "{", http.StatusBadRequest},
		{"token not a string", `{"token":5}`, http.StatusBadRequest},
		{"unknown field", `{"token":"a","x":1}`, http.StatusBadRequest},
	} {
		if r := h.do(t, readerID, http.MethodPost, "/api/v1/federation/verify", tc.body); r.status != tc.status {
			t.Errorf("%s: verify = %d %s; want %d", tc.name, r.status, r.raw, tc.status)
		}
	}
	if r := h.do(t, nil, http.MethodPost, "/api/v1/federation/verify", `{"token":"x"}`); r.status != http.StatusUnauthorized {
		t.Errorf("verify without context = %d; want 401", r.status)
	}
	if r := h.do(t, &authn.Identity{Subject: "s", OrgID: "o", Scopes: []string{"tokens:read"}}, http.MethodPost, "/api/v1/federation/verify", `{"token":"x"}`); r.status != http.StatusForbidden {
		t.Errorf("verify without agents:read = %d; want 403", r.status)
	}

	// The partner rotates: the unknown kid triggers one refetch.
	h.clock.Advance(250 * time.Millisecond) // past the minimum interval since registration
	before := idp.Requests()
	rotated := idp.AddKey(t, jose.RS256)
	expectValid(t, "rotated key", h.verify(t, readerID, partnertest.Sign(t, rotated, claims(func(map[string]any) {}))), true, "")
	if got := idp.Requests() - before; got != 1 {
		t.Errorf("Got(fetches for the rotation) = %d; want 1", got)
	}
	// A flood of random kids fetches at most once per interval: nothing
	// more within the interval of the rotation's fetch, then exactly one
	// fetch for the first unknown kid of the next interval and nothing
	// more within that one.
	randomKid := func(i int) string {
		k, err := jose.GenerateKey(jose.ES256)
		if err != nil {
			t.Fatal(err)
		}
		k.KID = fmt.Sprintf("random-%d", i)
		return partnertest.Sign(t, k, claims(func(map[string]any) {}))
	}
	for interval := range 2 {
		before = idp.Requests()
		for i := range 100 {
			expectValid(t, "random kid", h.verify(t, readerID, randomKid(i)), false, "unknown signing key")
		}
		if got, want := idp.Requests()-before, int64(interval); got != want {
			t.Errorf("Got(fetches for 100 random kids, interval %d) = %d; want %d", interval, got, want)
		}
		h.clock.Advance(250 * time.Millisecond)
	}
	// The partner goes down, then serves an empty set: the last good keys verify.
	for _, mode := range []string{partnertest.ModeDown, partnertest.ModeEmpty, partnertest.ModeGarbage} {
		idp.SetMode(mode)
		h.clock.Advance(250 * time.Millisecond)
		expectValid(t, "unknown kid while "+mode, h.verify(t, readerID, partnertest.Sign(t, other.Key(0), claims(func(map[string]any) {}))), false, "unknown signing key")
		expectValid(t, "known key while "+mode, h.verify(t, readerID, idp.Token(t, audience, "a")), true, "")
		expectValid(t, "rotated key while "+mode, h.verify(t, readerID, partnertest.Sign(t, rotated, claims(func(map[string]any) {}))), true, "")
	}
	idp.SetMode(partnertest.ModeOK)

	// Suspended, then expired partners are refused.
	id := p["id"].(string)
	if r := h.do(t, adminID, http.MethodPatch, "/api/v1/federation/partners/"+id, `{"status":"suspended"}`); r.status != http.StatusOK {
		t.Fatalf("PATCH suspend = %d %s", r.status, r.raw)
	}
	expectValid(t, "suspended partner", h.verify(t, readerID, idp.Token(t, audience, "a")), false, "partner suspended")
	exp := h.clock.Now().Add(1200 * time.Millisecond).UTC().Format(time.RFC3339Nano)
	if r := h.do(t, adminID, http.MethodPatch, "/api/v1/federation/partners/"+id, `{"status":"active","expiresAt":"`+exp+`"}`); r.status != http.StatusOK {
		t.Fatalf("PATCH expiry = %d %s", r.status, r.raw)
	}
	expectValid(t, "active again", h.verify(t, readerID, idp.Token(t, audience, "a")), true, "")
	h.clock.Advance(1300 * time.Millisecond)
	expectValid(t, "expired partner", h.verify(t, readerID, idp.Token(t, audience, "a")), false, "partner trust expired")
	if r := h.do(t, adminID, http.MethodGet, "/api/v1/federation/partners/"+id, ""); r.body["status"] != "expired" {
		t.Errorf("Got(status) = %v; want expired", r.body["status"])
	}
}

func TestAllowedOrganizationsAndExchange(t *testing.T) {
	t.Parallel()
	h := newHarness(t, loopback)
	idp := partnertest.Start(t)
	org, otherOrg := uuid.NewString(), uuid.NewString()
	agent, strayAgent := uuid.NewString(), uuid.NewString()
	p := h.register(t, idp, map[string]any{
		"allowedOrganizations": []string{org},
		"claimMapping":         map[string]any{"subjectClaim": "sub", "agentMap": map[string]string{"ext-1": agent, "ext-2": strayAgent, "ext-3": uuid.NewString()}},
	})
	for _, a := range []struct{ id, org string }{{agent, org}, {strayAgent, otherOrg}} {
		e, err := events.New(events.AgentCreated, "token", a.org, a.id, events.AgentData{AgentID: a.id, OrganizationID: a.org, Status: "active", At: time.Now().UTC()})
		if err != nil {
			t.Fatal(err)
		}
		if err := h.svc.HandleAgentEvent(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	inOrg := &authn.Identity{Subject: "s", OrgID: org, Scopes: []string{"agents:read"}}
	expectValid(t, "caller in an allowed organisation", h.verify(t, inOrg, idp.Token(t, audience, "ext-1")), true, "")
	if r := h.verify(t, inOrg, idp.Token(t, audience, "ext-1")); r.body["agentId"] != agent {
		t.Errorf("Got(agentId) = %v; want the mapped agent %s", r.body["agentId"], agent)
	}
	expectValid(t, "caller in another organisation", h.verify(t, readerID, idp.Token(t, audience, "ext-1")), false, "organization not allowed for this partner")

	service := &authn.Identity{Subject: "token-service", OrgID: uuid.NewString(), Scopes: []string{}}
	check := func(token string) response {
		return h.do(t, service, http.MethodPost, "/internal/v1/federation/exchange-check", jsonBody(t, map[string]string{"token": token}))
	}
	r := check(idp.Token(t, audience, "ext-1"))
	if r.status != http.StatusOK || r.body["valid"] != true || r.body["agentId"] != agent || r.body["organizationId"] != org || r.body["partnerId"] != p["id"] || r.body["subject"] != "ext-1" {
		t.Errorf("exchange-check(mapped) = %d %s; want valid, the agent and its organisation", r.status, r.raw)
	}
	for _, tc := range []struct{ name, sub, reason string }{
		{"unmapped subject", "ext-9", "subject not mapped to a local agent"},
		{"agent in a disallowed organisation", "ext-2", "mapped agent's organization not allowed for this partner"},
		{"agent unknown locally", "ext-3", "mapped agent unknown"},
	} {
		if r := check(idp.Token(t, audience, tc.sub)); r.status != http.StatusOK || r.body["valid"] != false || r.body["reason"] != tc.reason {
			t.Errorf("%s: exchange-check = %d %s; want valid false, %q", tc.name, r.status, r.raw, tc.reason)
		}
	}
	e, _ := events.New(events.AgentSuspended, "token", org, agent, events.AgentData{AgentID: agent, OrganizationID: org, Status: "suspended", At: time.Now().UTC().Add(time.Second)})
	if err := h.svc.HandleAgentEvent(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if r := check(idp.Token(t, audience, "ext-1")); r.body["valid"] != false || r.body["reason"] != "mapped agent is suspended" {
		t.Errorf("exchange-check(suspended agent) = %s; want refused", r.raw)
	}
	if got, err := h.svc.ExchangeCheck(context.Background(), "garbage"); err != nil || got.Valid {
		t.Errorf("ExchangeCheck(garbage) = %+v, %v; want invalid, no error", got, err)
	}
	if r := h.do(t, nil, http.MethodPost, "/internal/v1/federation/exchange-check", `{"token":"x"}`); r.status != http.StatusUnauthorized {
		t.Errorf("exchange-check without context = %d; want 401", r.status)
	}
}

func TestPrivateAddressRefusedWithoutConnection(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil) // no allow-list
	idp := partnertest.Start(t)
	r := h.do(t, adminID, http.MethodPost, "/api/v1/federation/trust", jsonBody(t, map[string]any{"name": "Local", "issuer": idp.Issuer, "jwksUri": idp.JWKSURI}))
	if r.status != http.StatusBadRequest {
		t.Errorf("POST /federation/trust(loopback) = %d %s; want 400", r.status, r.raw)
	}
	if got := idp.Conns(); got != 0 {
		t.Errorf("Got(connections to the private address) = %d; want 0", got)
	}
}
