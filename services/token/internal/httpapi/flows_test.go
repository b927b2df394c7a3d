package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/jose"
	"github.com/agentidp/agentidp/services/token/internal/domain"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
)

func TestIssueTokenAndVerifyWithJWKS(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.createAgent(t, "org-1", "bot@example.com", `,"scopes":["agents:read","agents:write","audit:read"],"defaultScopes":["agents:read"]`)
	cred := e.createCredential(t, "org-1", a.AgentID, "")
	if !strings.HasPrefix(cred.ClientSecret, "ais_") || cred.ClientID != a.AgentID {
		t.Fatalf("credential = %+v; want ais_ secret for %s", cred, a.AgentID)
	}
	jwksRec := e.do(t, "GET", "/.well-known/jwks.json", "", nil, "")
	if jwksRec.Code != 200 || jwksRec.Header().Get("Cache-Control") != "public, max-age=300" {
		t.Fatalf("jwks = %d %q", jwksRec.Code, jwksRec.Header().Get("Cache-Control"))
	}
	keys, err := jose.NewStaticKeySet(decode[jose.JWKS](t, jwksRec))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		req       tokenReq
		wantScope string
	}{
		{"basic default scopes", tokenReq{id: a.AgentID, secret: cred.ClientSecret, basic: true}, "agents:read"},
		{"post narrowed scope", tokenReq{id: a.AgentID, secret: cred.ClientSecret, scope: "audit:read agents:write", hasScope: true}, "audit:read agents:write"},
	}
	for _, tc := range tests {
		rec := e.token(t, tc.req)
		if rec.Code != 200 || rec.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("%s: token = %d %s", tc.name, rec.Code, rec.Body)
		}
		res := decode[domain.TokenResponse](t, rec)
		if res.TokenType != "Bearer" || res.ExpiresIn != 3600 || res.Scope != tc.wantScope {
			t.Errorf("%s: response = %+v; want scope %q", tc.name, res, tc.wantScope)
		}
		var claims domain.AccessClaims
		if err := jose.Verify(res.AccessToken, keys, jose.VerifyOptions{Issuer: "http://idp.test", Audience: "agentidp", Typ: "at+jwt"}, &claims); err != nil {
			t.Fatalf("%s: Verify() = %v", tc.name, err)
		}
		h, _ := jose.ParseUnverifiedHeader(res.AccessToken)
		if h.Kid == "" || h.Alg != jose.ES256 || h.Typ != "at+jwt" {
			t.Errorf("%s: header = %+v", tc.name, h)
		}
		if claims.Subject != a.AgentID || claims.ClientID != a.AgentID || claims.OrganizationID != "org-1" ||
			claims.CredentialID != cred.CredentialID || claims.Scope != tc.wantScope || claims.ID == "" || claims.ExpiresAt-claims.IssuedAt != 3600 {
			t.Errorf("%s: claims = %+v", tc.name, claims)
		}
	}
	if rec := e.token(t, tokenReq{id: a.AgentID, secret: cred.ClientSecret, scope: "admin:orgs", hasScope: true}); rec.Code != 400 || decode[map[string]string](t, rec)["error"] != "invalid_scope" {
		t.Errorf("scope beyond agent = %d %s; want 400 invalid_scope", rec.Code, rec.Body)
	}
	disc := decode[map[string]any](t, e.do(t, "GET", "/.well-known/openid-configuration", "", nil, ""))
	if disc["token_endpoint"] != "http://idp.test/oauth2/token" || disc["issuer"] != "http://idp.test" {
		t.Errorf("discovery = %v", disc)
	}
}

func TestInvalidClientIsUniform(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.createAgent(t, "org-1", "bot@example.com", "")
	cred := e.createCredential(t, "org-1", a.AgentID, "")
	expiring := e.createCredential(t, "org-1", a.AgentID, `{"expiresAt":"`+time.Now().Add(time.Hour).UTC().Format(time.RFC3339)+`"}`)

	want := e.token(t, tokenReq{id: uuid.NewString(), secret: "ais_nope"})
	if want.Code != 401 {
		t.Fatalf("unknown client = %d; want 401", want.Code)
	}
	check := func(name string, r tokenReq) {
		t.Helper()
		rec := e.token(t, r)
		if rec.Code != 401 || rec.Body.String() != want.Body.String() {
			t.Errorf("%s: = %d %s; want 401 %s", name, rec.Code, rec.Body, want.Body)
		}
	}
	check("wrong secret", tokenReq{id: a.AgentID, secret: cred.ClientSecret + "x"})
	check("not a uuid", tokenReq{id: "../etc", secret: "x"})
	if rec := e.token(t, tokenReq{id: a.AgentID, secret: "x", basic: true}); rec.Header().Get("WWW-Authenticate") != `Basic realm="agentidp"` {
		t.Errorf("basic failure WWW-Authenticate = %q", rec.Header().Get("WWW-Authenticate"))
	}

	// Warm the cache, then revoke: the cache must not serve the old positive.
	if rec := e.token(t, tokenReq{id: a.AgentID, secret: cred.ClientSecret}); rec.Code != 200 {
		t.Fatalf("token = %d", rec.Code)
	}
	if rec := e.do(t, "DELETE", "/api/v1/agents/"+a.AgentID+"/credentials/"+cred.CredentialID, "org-1", allScopes, ""); rec.Code != 204 {
		t.Fatalf("revoke = %d %s", rec.Code, rec.Body)
	}
	check("revoked credential", tokenReq{id: a.AgentID, secret: cred.ClientSecret})

	// Expired credential.
	if rec := e.token(t, tokenReq{id: a.AgentID, secret: expiring.ClientSecret}); rec.Code != 200 {
		t.Fatalf("token with expiring credential = %d", rec.Code)
	}
	e.svc.SetClock(func() time.Time { return time.Now().Add(2 * time.Hour) })
	check("expired credential", tokenReq{id: a.AgentID, secret: expiring.ClientSecret})
	e.svc.SetClock(time.Now)

	// Suspended agent.
	if rec := e.do(t, "PATCH", "/api/v1/agents/"+a.AgentID, "org-1", allScopes, `{"status":"suspended"}`); rec.Code != 200 {
		t.Fatalf("suspend = %d %s", rec.Code, rec.Body)
	}
	check("suspended agent", tokenReq{id: a.AgentID, secret: expiring.ClientSecret})

	// Rotation invalidates the old secret at once.
	if rec := e.do(t, "PATCH", "/api/v1/agents/"+a.AgentID, "org-1", allScopes, `{"status":"active"}`); rec.Code != 200 {
		t.Fatalf("reactivate = %d %s", rec.Code, rec.Body)
	}
	rot := e.do(t, "POST", "/api/v1/agents/"+a.AgentID+"/credentials/"+expiring.CredentialID+"/rotate", "org-1", allScopes, "")
	if rot.Code != 200 {
		t.Fatalf("rotate = %d %s", rot.Code, rot.Body)
	}
	check("rotated-away secret", tokenReq{id: a.AgentID, secret: expiring.ClientSecret})
	if rec := e.token(t, tokenReq{id: a.AgentID, secret: decode[domain.NewCredential](t, rot).ClientSecret}); rec.Code != 200 {
		t.Errorf("token with rotated secret = %d %s", rec.Code, rec.Body)
	}
	list := e.do(t, "GET", "/api/v1/agents/"+a.AgentID+"/credentials", "org-1", allScopes, "")
	if list.Code != 200 || strings.Contains(list.Body.String(), "ais_") || strings.Contains(list.Body.String(), "clientSecret") {
		t.Errorf("list credentials = %d %s; want no secrets", list.Code, list.Body)
	}
}

func TestTokenRequestErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tests := []struct {
		name, body, auth, ct string
		code                 int
		err                  string
	}{
		{"password grant", "grant_type=password", "", "", 400, "unsupported_grant_type"},
		{"no grant", "client_id=x", "", "", 400, "invalid_request"},
		{"json", `{"grant_type":"client_credentials"}`, "", "application/json", 400, "invalid_request"},
		{"both methods", "grant_type=client_credentials&client_secret=s", "Basic eDpz", "", 400, "invalid_request"},
		{"repeated", "grant_type=client_credentials&grant_type=client_credentials", "", "", 400, "invalid_request"},
		{"no credentials", "grant_type=client_credentials", "", "", 401, "invalid_client"},
	}
	for _, tc := range tests {
		req := httptest.NewRequest("POST", "/api/v1/token", strings.NewReader(tc.body))
		ct := tc.ct
		if ct == "" {
			ct = "application/x-www-form-urlencoded"
		}
		req.Header.Set("Content-Type", ct)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		var got map[string]string
		_ = json.Unmarshal(rec.Body.Bytes(), &got)
		if rec.Code != tc.code || got["error"] != tc.err || rec.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("%s: = %d %s; want %d %s", tc.name, rec.Code, rec.Body, tc.code, tc.err)
		}
	}
}

func TestAgentAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.createAgent(t, "org-1", "Bot@Example.com", "")
	if a.Status != "active" || a.OrganizationID != "org-1" || !slices.Equal(a.Scopes, []string{"agents:read"}) || a.DID != nil || a.Email != "bot@example.com" {
		t.Errorf("created = %+v", a)
	}
	if v := e.counters.v["usage:agents:org-1"]; v != "1" {
		t.Errorf("usage:agents:org-1 = %q; want 1", v)
	}
	tests := []struct {
		name, method, path, org string
		scopes                  []string
		body                    string
		code                    int
		codeStr                 string
	}{
		{"no context", "GET", "/api/v1/agents", "", nil, "", 401, "UNAUTHORIZED"},
		{"missing scope", "POST", "/api/v1/agents", "org-1", []string{"agents:read"}, body("x@example.com", ""), 403, "FORBIDDEN"},
		{"duplicate", "POST", "/api/v1/agents", "org-1", allScopes, body("bot@example.com", ""), 409, "AGENT_ALREADY_EXISTS"},
		{"malformed", "POST", "/api/v1/agents", "org-1", allScopes, `{"email":`, 400, "VALIDATION_ERROR"},
		{"unknown field", "POST", "/api/v1/agents", "org-1", allScopes, body("u@example.com", `,"admin":true`), 400, "VALIDATION_ERROR"},
		{"bad enum", "POST", "/api/v1/agents", "org-1", allScopes, strings.Replace(body("e@example.com", ""), "screener", "robot", 1), 400, "VALIDATION_ERROR"},
		{"bad semver", "POST", "/api/v1/agents", "org-1", allScopes, strings.Replace(body("v@example.com", ""), "1.2.3", "1.2", 1), 400, "VALIDATION_ERROR"},
		{"scope escalation", "POST", "/api/v1/agents", "org-1", allScopes, body("s@example.com", `,"scopes":["admin:orgs"]`), 403, "FORBIDDEN"},
		{"other org without admin", "POST", "/api/v1/agents", "org-1", allScopes, body("o@example.com", `,"organizationId":"org-2"`), 403, "FORBIDDEN"},
		{"unknown org as admin", "POST", "/api/v1/agents", "org-1", append(slices.Clone(allScopes), "admin:orgs"), body("o@example.com", `,"organizationId":"org-9"`), 404, "ORGANIZATION_NOT_FOUND"},
		{"oversized", "POST", "/api/v1/agents", "org-1", allScopes, `{"email":"` + strings.Repeat("a", 70<<10) + `"}`, 413, "PAYLOAD_TOO_LARGE"},
		{"invalid uuid", "GET", "/api/v1/agents/not-a-uuid", "org-1", allScopes, "", 404, "AGENT_NOT_FOUND"},
		{"cross org", "GET", "/api/v1/agents/" + a.AgentID, "org-2", allScopes, "", 404, "AGENT_NOT_FOUND"},
		{"cross org patch", "PATCH", "/api/v1/agents/" + a.AgentID, "org-2", allScopes, `{"owner":"x"}`, 404, "AGENT_NOT_FOUND"},
		{"bad status", "PATCH", "/api/v1/agents/" + a.AgentID, "org-1", allScopes, `{"status":"decommissioned"}`, 400, "VALIDATION_ERROR"},
		{"bad filter", "GET", "/api/v1/agents?status=zombie", "org-1", allScopes, "", 400, "VALIDATION_ERROR"},
		{"bad limit", "GET", "/api/v1/agents?limit=101", "org-1", allScopes, "", 400, "VALIDATION_ERROR"},
	}
	for _, tc := range tests {
		rec := e.do(t, tc.method, tc.path, tc.org, tc.scopes, tc.body)
		got := decode[map[string]any](t, rec)
		if rec.Code != tc.code || got["code"] != tc.codeStr {
			t.Errorf("%s: = %d %v; want %d %s", tc.name, rec.Code, got, tc.code, tc.codeStr)
		}
	}
	list := decode[domain.AgentPage](t, e.do(t, "GET", "/api/v1/agents", "org-1", allScopes, ""))
	if list.Total != 1 || len(list.Data) != 1 || list.Limit != 20 || list.Page != 1 || list.TotalPages != 1 {
		t.Errorf("list = %+v; want exactly the one agent (nothing created by failed requests)", list)
	}
	upd := e.do(t, "PATCH", "/api/v1/agents/"+a.AgentID, "org-1", allScopes, `{"owner":"new-owner","version":"2.0.0"}`)
	if got := decode[domain.Agent](t, upd); upd.Code != 200 || got.Owner != "new-owner" || got.Version != "2.0.0" {
		t.Errorf("patch = %d %+v", upd.Code, got)
	}
	if rec := e.do(t, "DELETE", "/api/v1/agents/"+a.AgentID, "org-1", allScopes, ""); rec.Code != 204 {
		t.Errorf("decommission = %d %s", rec.Code, rec.Body)
	}
	if rec := e.do(t, "DELETE", "/api/v1/agents/"+a.AgentID, "org-1", allScopes, ""); rec.Code != 204 {
		t.Errorf("decommission again = %d %s; want 204", rec.Code, rec.Body)
	}
	if rec := e.do(t, "PATCH", "/api/v1/agents/"+a.AgentID, "org-1", allScopes, `{"owner":"x"}`); rec.Code != 409 {
		t.Errorf("patch decommissioned = %d %s; want 409", rec.Code, rec.Body)
	}
	if rec := e.do(t, "POST", "/api/v1/agents/"+a.AgentID+"/credentials", "org-1", allScopes, ""); rec.Code != 409 {
		t.Errorf("credential for decommissioned = %d %s; want 409", rec.Code, rec.Body)
	}
	if v := e.counters.v["usage:agents:org-1"]; v != "0" {
		t.Errorf("usage:agents:org-1 = %q; want 0", v)
	}
}

// A limited organisation's tokens are counted from block reservations: a
// round trip to the shared counter per block, not per token.
func TestTokenLimitIsCountedInReservations(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	raw, _ := json.Marshal(events.OrgData{OrganizationID: "org-r", Status: "active", Limits: events.Limits{MaxAgents: 5, MaxTokensPerDay: 5_000}})
	e.svc.Orgs().Apply("org-r", raw)
	a := e.createAgent(t, "org-r", "r@example.com", "")
	cred := e.createCredential(t, "org-r", a.AgentID, "{}")
	for i := range 120 {
		if rec := e.token(t, tokenReq{id: a.AgentID, secret: cred.ClientSecret}); rec.Code != 200 {
			t.Fatalf("token %d = %d %s", i, rec.Code, rec.Body)
		}
	}
	e.counters.mu.Lock()
	defer e.counters.mu.Unlock()
	// One single-token reservation, then blocks of 100: 1 + ceil(119/100).
	if e.counters.reserves != 3 {
		t.Errorf("%d reservations for 120 tokens; want 3", e.counters.reserves)
	}
}

// With the shared counters unreachable, the token service used to let
// every token through. Now a replica admits its share of what remained of
// the daily token limit (with one replica: all of it, and no more) and adds
// what it admitted back when the counters return.
func TestAttackTokenLimitHoldsWhileCountersAreDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const limit = 40
	raw, _ := json.Marshal(events.OrgData{OrganizationID: "org-d", Status: "active", Limits: events.Limits{MaxAgents: -1, MaxTokensPerDay: limit}})
	e.svc.Orgs().Apply("org-d", raw)
	a := e.createAgent(t, "org-d", "a@example.com", "")
	cred := e.createCredential(t, "org-d", a.AgentID, "{}")
	issued := 0
	for range 10 {
		if rec := e.token(t, tokenReq{id: a.AgentID, secret: cred.ClientSecret}); rec.Code != 200 {
			t.Fatalf("token before the outage = %d %s; want 200", rec.Code, rec.Body)
		}
		issued++
	}
	e.counters.mu.Lock()
	e.counters.down = true
	e.counters.mu.Unlock()
	for range 2 * limit {
		rec := e.token(t, tokenReq{id: a.AgentID, secret: cred.ClientSecret})
		switch rec.Code {
		case 200:
			issued++
		case 429:
		default:
			t.Fatalf("token during the outage = %d %s; want 200 or 429", rec.Code, rec.Body)
		}
	}
	if issued != limit {
		t.Fatalf("tokens issued with the counters down = %d; want %d (the limit, one replica)", issued, limit)
	}
	e.counters.mu.Lock()
	e.counters.down = false
	e.counters.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.svc.RunUsageFlusher(ctx, 10*time.Millisecond) }()
	defer func() { cancel(); <-done }()
	key := "usage:tokens:org-d:" + time.Now().UTC().Format("20060102")
	deadline := time.Now().Add(5 * time.Second)
	for {
		e.counters.mu.Lock()
		got := e.counters.m[key]
		e.counters.mu.Unlock()
		if got == limit {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("shared token count after the outage = %d; want %d (every token issued)", got, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if rec := e.token(t, tokenReq{id: a.AgentID, secret: cred.ClientSecret}); rec.Code != 429 {
		t.Fatalf("token past the limit after the outage = %d %s; want 429", rec.Code, rec.Body)
	}
}

func TestAgentLimitAndEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	lim := events.OrgData{OrganizationID: "org-l", Status: "active", Limits: events.Limits{MaxAgents: 2, MaxTokensPerDay: 1}}
	raw, _ := json.Marshal(lim)
	e.svc.Orgs().Apply("org-l", raw)
	a := e.createAgent(t, "org-l", "a@example.com", "")
	e.createAgent(t, "org-l", "b@example.com", "")
	rec := e.do(t, "POST", "/api/v1/agents", "org-l", allScopes, body("c@example.com", ""))
	if rec.Code != 429 || rec.Header().Get("Retry-After") == "" || decode[map[string]any](t, rec)["code"] != "TIER_LIMIT_EXCEEDED" {
		t.Errorf("third agent = %d %s; want 429 TIER_LIMIT_EXCEEDED with Retry-After", rec.Code, rec.Body)
	}
	// Daily token limit of 1.
	cred := e.createCredential(t, "org-l", a.AgentID, "{}")
	if rec := e.token(t, tokenReq{id: a.AgentID, secret: cred.ClientSecret}); rec.Code != 200 {
		t.Fatalf("first token = %d %s", rec.Code, rec.Body)
	}
	if rec := e.token(t, tokenReq{id: a.AgentID, secret: cred.ClientSecret}); rec.Code != 429 || rec.Header().Get("Retry-After") == "" {
		t.Errorf("second token = %d %s; want 429", rec.Code, rec.Body)
	}
	// agent.created reached the stream through the outbox.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cons, err := e.js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.AgentCreated.Subject()}})
	if err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("no agent.created event for %s: %v", a.AgentID, err)
		}
		env, err := events.Decode(msg.Data())
		if err != nil {
			t.Fatal(err)
		}
		var d events.AgentData
		if err := env.DecodeData(&d); err != nil {
			t.Fatal(err)
		}
		if d.AgentID == a.AgentID {
			if env.OrgID != "org-l" || env.Source != "token" || d.Email != "a@example.com" {
				t.Errorf("event = %+v %+v", env, d)
			}
			return
		}
	}
}

func BenchmarkIssueToken(b *testing.B) {
	e := newEnv(b)
	a := e.createAgent(b, "org-b", "bench@example.com", "")
	raw, _ := json.Marshal(events.OrgData{OrganizationID: "org-b", Status: "active", Limits: events.Limits{MaxAgents: -1, MaxTokensPerDay: -1}})
	e.svc.Orgs().Apply("org-b", raw)
	cred := e.createCredential(b, "org-b", a.AgentID, "")
	r := tokenReq{id: a.AgentID, secret: cred.ClientSecret, basic: true}
	if rec := e.token(b, r); rec.Code != 200 {
		b.Fatalf("token = %d", rec.Code)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if rec := e.token(b, r); rec.Code != 200 {
			b.Fatalf("token = %d", rec.Code)
		}
	}
}

// TestOperatorManagesOtherOrganisationsAgents checks that admin:orgs — and
// only admin:orgs — reaches an agent of another organisation, so the
// platform operator can give a new organisation its first credential.
func TestOperatorManagesOtherOrganisationsAgents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.createAgent(t, "org-b", "first@example.com", "")
	operator := append(slices.Clone(allScopes), "admin:orgs")
	tests := []struct {
		name   string
		scopes []string
		method string
		path   string
		body   string
		want   int
	}{
		{"org admin of another org cannot read", allScopes, "GET", "/api/v1/agents/" + a.AgentID, "", 404},
		{"org admin of another org cannot create a credential", allScopes, "POST", "/api/v1/agents/" + a.AgentID + "/credentials", "{}", 404},
		{"operator reads", operator, "GET", "/api/v1/agents/" + a.AgentID, "", 200},
		{"operator creates a credential", operator, "POST", "/api/v1/agents/" + a.AgentID + "/credentials", "{}", 201},
		{"operator lists credentials", operator, "GET", "/api/v1/agents/" + a.AgentID + "/credentials", "", 200},
		{"operator on an unknown agent", operator, "GET", "/api/v1/agents/01a2227a-0000-7000-8000-000000000000", "", 404},
	}
	for _, tc := range tests {
		rec := e.do(t, tc.method, tc.path, "org-a", tc.scopes, tc.body)
		if rec.Code != tc.want {
			t.Errorf("%s: %s %s = %d %s; want %d", tc.name, tc.method, tc.path, rec.Code, rec.Body, tc.want)
		}
	}
	// The operator's credential authenticates the agent in its own organisation.
	nc := decode[domain.NewCredential](t, e.do(t, "POST", "/api/v1/agents/"+a.AgentID+"/credentials", "org-a", operator, "{}"))
	rec := e.token(t, tokenReq{id: a.AgentID, secret: nc.ClientSecret, basic: true})
	if rec.Code != 200 {
		t.Fatalf("token with the operator-made credential = %d %s", rec.Code, rec.Body)
	}
}
