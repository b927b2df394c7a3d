package httpapi_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/jose"
	"github.com/agentidp/agentidp/services/token/internal/domain"
	"github.com/nats-io/nats.go/jetstream"
)

// party is an agent with a credential and an access token.
type party struct {
	agent  domain.Agent
	cred   domain.NewCredential
	token  string
	claims domain.AccessClaims
}

func (e *env) party(t testing.TB, org, email string) party {
	t.Helper()
	a := e.createAgent(t, org, email, `,"scopes":["agents:read","tokens:read"]`)
	cred := e.createCredential(t, org, a.AgentID, "")
	rec := e.token(t, tokenReq{id: a.AgentID, secret: cred.ClientSecret, scope: "agents:read tokens:read", hasScope: true})
	if rec.Code != http.StatusOK {
		t.Fatalf("token = %d %s", rec.Code, rec.Body)
	}
	tok := decode[domain.TokenResponse](t, rec).AccessToken
	return party{agent: a, cred: cred, token: tok, claims: e.claims(t, tok)}
}

// identity is the internal context the gateway would sign for p's token.
func (p party) identity() authn.Identity {
	return authn.Identity{Subject: p.agent.AgentID, OrgID: p.agent.OrganizationID, ClientID: p.agent.AgentID,
		Scopes: strings.Fields(p.claims.Scope), JTI: p.claims.ID, ExpiresAt: p.claims.ExpiresAt,
		CredentialID: p.claims.CredentialID, IssuedAtMs: p.claims.IssuedAtMs}
}

// claims verifies tok with the service's JWKS.
func (e *env) claims(t testing.TB, tok string) domain.AccessClaims {
	t.Helper()
	var doc jose.JWKS
	if err := json.Unmarshal(e.svc.JWKS(), &doc); err != nil {
		t.Fatal(err)
	}
	keys, err := jose.NewStaticKeySet(doc)
	if err != nil {
		t.Fatal(err)
	}
	var c domain.AccessClaims
	if err := jose.Verify(tok, keys, jose.VerifyOptions{Issuer: "http://idp.test", Audience: "agentidp", Typ: "at+jwt"}, &c); err != nil {
		t.Fatalf("Verify(%.20s…) = %v", tok, err)
	}
	return c
}

// as sends a JSON request with id as the internal context.
func (e *env) as(t testing.TB, id authn.Identity, method, path, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	id.Method, id.Path = req.Method, req.URL.Path
	v, err := e.codec.Sign(id)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(authn.Header, v)
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

// exchange posts an RFC 8693 request authenticated as actor (Basic).
func (e *env) exchange(t testing.TB, clientID, secret string, form url.Values) *httptest.ResponseRecorder {
	t.Helper()
	form.Set("grant_type", domain.GrantTypeTokenExchange)
	req := httptest.NewRequest("POST", "/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

func exchangeForm(subject, actor string) url.Values {
	return url.Values{"subject_token": {subject}, "subject_token_type": {domain.TokenTypeAccessToken},
		"actor_token": {actor}, "actor_token_type": {domain.TokenTypeAccessToken}}
}

// forge signs claims with the service's own signing key (what only the
// token service can do: tokens with claims it never issues).
func (e *env) forge(t testing.TB, c domain.AccessClaims) string {
	t.Helper()
	key, err := e.keys.Active(context.Background(), jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jose.NewSigner(key, "at+jwt")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestDelegateEndpoint(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b := e.party(t, "org-1", "a@x.io"), e.party(t, "org-1", "b@x.io")
	foreign := e.party(t, "org-2", "f@x.io")
	suspended := e.party(t, "org-1", "s@x.io")
	if rec := e.do(t, "PATCH", "/api/v1/agents/"+suspended.agent.AgentID, "org-1", allScopes, `{"status":"suspended"}`); rec.Code != http.StatusOK {
		t.Fatalf("suspend = %d %s", rec.Code, rec.Body)
	}
	const path = "/api/v1/oauth2/token/delegate"
	tests := []struct {
		name     string
		body     string
		wantCode int
		wantErr  string
	}{
		{"scope the delegator lacks", `{"delegateeAgentId":"` + b.agent.AgentID + `","scopes":["agents:write"],"ttlSeconds":600}`, 400, "INVALID_SCOPES"},
		{"unknown scope", `{"delegateeAgentId":"` + b.agent.AgentID + `","scopes":["root"],"ttlSeconds":600}`, 400, "INVALID_SCOPES"},
		{"no scopes", `{"delegateeAgentId":"` + b.agent.AgentID + `","scopes":[],"ttlSeconds":600}`, 400, "INVALID_SCOPES"},
		{"ttl too short", `{"delegateeAgentId":"` + b.agent.AgentID + `","scopes":["agents:read"],"ttlSeconds":59}`, 400, "INVALID_TTL"},
		{"ttl too long", `{"delegateeAgentId":"` + b.agent.AgentID + `","scopes":["agents:read"],"ttlSeconds":86401}`, 400, "INVALID_TTL"},
		{"self", `{"delegateeAgentId":"` + a.agent.AgentID + `","scopes":["agents:read"],"ttlSeconds":600}`, 400, "VALIDATION_ERROR"},
		{"missing delegatee", `{"scopes":["agents:read"]}`, 400, "VALIDATION_ERROR"},
		{"both id fields disagree", `{"delegateeAgentId":"` + b.agent.AgentID + `","delegatee_id":"` + foreign.agent.AgentID + `","scope":"agents:read"}`, 400, "VALIDATION_ERROR"},
		{"unknown field", `{"delegateeAgentId":"` + b.agent.AgentID + `","scopes":["agents:read"],"admin":true}`, 400, "VALIDATION_ERROR"},
		{"unknown delegatee", `{"delegateeAgentId":"0195f1a2-0000-7000-8000-000000000000","scopes":["agents:read"]}`, 404, "AGENT_NOT_FOUND"},
		{"another organisation's agent", `{"delegateeAgentId":"` + foreign.agent.AgentID + `","scopes":["agents:read"]}`, 404, "AGENT_NOT_FOUND"},
		{"suspended delegatee", `{"delegateeAgentId":"` + suspended.agent.AgentID + `","scopes":["agents:read"]}`, 404, "AGENT_NOT_FOUND"},
	}
	for _, tc := range tests {
		rec := e.as(t, a.identity(), "POST", path, tc.body)
		if rec.Code != tc.wantCode || decode[map[string]any](t, rec)["code"] != tc.wantErr {
			t.Errorf("%s: Got(POST delegate) = %d %s; want %d %s", tc.name, rec.Code, rec.Body, tc.wantCode, tc.wantErr)
		}
	}
	req := httptest.NewRequest("POST", path, strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("Got(delegate without internal context) = %d; want 401", rec.Code)
	}

	// The seed's form, and the diagram's form.
	rec = e.as(t, a.identity(), "POST", path, `{"delegateeAgentId":"`+b.agent.AgentID+`","scopes":["agents:read"],"ttlSeconds":600}`)
	if rec.Code != http.StatusCreated {
		t.Fatalf("delegate = %d %s; want 201", rec.Code, rec.Body)
	}
	res := decode[domain.DelegateResult](t, rec)
	c := e.claims(t, res.DelegationToken)
	if c.Subject != b.agent.AgentID || c.ClientID != b.agent.AgentID || c.Act == nil || c.Act.Sub != a.agent.AgentID || c.Act.Act != nil ||
		c.ChainID != res.ChainID || c.Scope != "agents:read" || c.OrganizationID != "org-1" || c.ExpiresAt > time.Now().Add(601*time.Second).Unix() {
		t.Errorf("Got(delegation claims) = %+v; want sub B, act A, chain %s, scope agents:read", c, res.ChainID)
	}
	if res.DelegatorAgentID != a.agent.AgentID || res.DelegateeAgentID != b.agent.AgentID || !slices.Equal(res.Scopes, []string{"agents:read"}) {
		t.Errorf("Got(delegate response) = %+v", res)
	}
	rec = e.as(t, a.identity(), "POST", path, `{"delegatee_id":"`+b.agent.AgentID+`","scope":"agents:read tokens:read"}`)
	if rec.Code != http.StatusCreated {
		t.Fatalf("delegate (diagram form) = %d %s; want 201", rec.Code, rec.Body)
	}
	second := decode[domain.DelegateResult](t, rec)

	// Never outlives the presented token.
	short := a.identity()
	short.ExpiresAt = time.Now().Add(90 * time.Second).Unix()
	rec = e.as(t, short, "POST", path, `{"delegateeAgentId":"`+b.agent.AgentID+`","scopes":["agents:read"],"ttlSeconds":86400}`)
	if rec.Code != http.StatusCreated {
		t.Fatalf("delegate = %d %s", rec.Code, rec.Body)
	}
	if got := e.claims(t, decode[domain.DelegateResult](t, rec).DelegationToken).ExpiresAt; got != short.ExpiresAt {
		t.Errorf("Got(exp of delegation from a 90s token) = %d; want %d (the parent's exp)", got, short.ExpiresAt)
	}

	// A delegated caller cannot use /delegate.
	delegated := b.identity()
	delegated.Actors = []string{a.agent.AgentID}
	if rec := e.as(t, delegated, "POST", path, `{"delegateeAgentId":"`+a.agent.AgentID+`","scopes":["agents:read"]}`); rec.Code != http.StatusForbidden {
		t.Errorf("Got(delegate with a delegated token) = %d %s; want 403", rec.Code, rec.Body)
	}

	// verify-delegation never fails with 5xx.
	verify := func(caller authn.Identity, tok string) domain.VerifyResult {
		t.Helper()
		b, _ := json.Marshal(map[string]string{"token": tok})
		rec := e.as(t, caller, "POST", "/api/v1/oauth2/token/verify-delegation", string(b))
		if rec.Code != http.StatusOK {
			t.Fatalf("verify-delegation = %d %s; want 200", rec.Code, rec.Body)
		}
		return decode[domain.VerifyResult](t, rec)
	}
	if got := verify(b.identity(), res.DelegationToken); !got.Valid || !slices.Equal(got.Chain, []string{a.agent.AgentID, b.agent.AgentID}) ||
		got.DelegatorAgentID != a.agent.AgentID || got.ChainID != res.ChainID {
		t.Errorf("Got(verify valid) = %+v; want valid chain [A B]", got)
	}
	expired := c
	expired.ExpiresAt, expired.IssuedAt, expired.NotBefore = time.Now().Add(-time.Hour).Unix(), time.Now().Add(-2*time.Hour).Unix(), 0
	for name, tok := range map[string]string{
		"garbage":              "not-a-token",
		"plain access token":   a.token,
		"expired":              e.forge(t, expired),
		"huge":                 strings.Repeat("x", 20000),
		"foreign organisation": res.DelegationToken, // verified by org-2
	} {
		caller := b.identity()
		if name == "foreign organisation" {
			caller = foreign.identity()
		}
		if got := verify(caller, tok); got.Valid || got.Reason == "" {
			t.Errorf("Got(verify %s) = %+v; want valid:false with a reason", name, got)
		}
	}

	// Revocation: only the delegator (or admin:orgs); idempotent; another
	// org's chain is missing.
	del := "/api/v1/oauth2/token/delegate/" + res.ChainID
	if rec := e.as(t, b.identity(), "DELETE", del, ""); rec.Code != http.StatusForbidden {
		t.Errorf("Got(revoke by delegatee) = %d; want 403", rec.Code)
	}
	if rec := e.as(t, foreign.identity(), "DELETE", del, ""); rec.Code != http.StatusNotFound {
		t.Errorf("Got(revoke by another org) = %d; want 404", rec.Code)
	}
	for i := range 2 {
		if rec := e.as(t, a.identity(), "DELETE", del, ""); rec.Code != http.StatusNoContent {
			t.Errorf("Got(revoke #%d by delegator) = %d %s; want 204", i+1, rec.Code, rec.Body)
		}
	}
	if got := verify(b.identity(), res.DelegationToken); got.Valid || got.Reason != "revoked" {
		t.Errorf("Got(verify revoked) = %+v; want valid:false revoked", got)
	}
	if got := verify(b.identity(), second.DelegationToken); !got.Valid {
		t.Errorf("Got(verify other chain after revocation) = %+v; want valid", got)
	}
	admin := authn.Identity{Subject: "operator", OrgID: "org-1", Scopes: []string{"admin:orgs"}, ExpiresAt: time.Now().Add(time.Hour).Unix()}
	if rec := e.as(t, admin, "DELETE", "/api/v1/oauth2/token/delegate/"+second.ChainID, ""); rec.Code != http.StatusNoContent {
		t.Errorf("Got(revoke by admin:orgs) = %d %s; want 204", rec.Code, rec.Body)
	}

	// Lists.
	list := func(id authn.Identity, q string) domain.DelegationPage {
		rec := e.as(t, id, "GET", "/api/v1/oauth2/token/delegations"+q, "")
		if rec.Code != http.StatusOK {
			t.Fatalf("list %s = %d %s", q, rec.Code, rec.Body)
		}
		return decode[domain.DelegationPage](t, rec)
	}
	if got := list(a.identity(), "?role=delegator"); got.Total != 3 || len(got.Data) != 3 || got.Data[0].ChainID != res.ChainID || got.Data[0].Status != "revoked" {
		t.Errorf("Got(list as delegator) = %+v; want 3, first revoked", got)
	}
	if got := list(b.identity(), "?role=delegatee&limit=1&page=2"); got.Total != 3 || len(got.Data) != 1 || got.Data[0].ChainID != second.ChainID {
		t.Errorf("Got(list as delegatee, page 2) = %+v", got)
	}
	if got := list(foreign.identity(), ""); got.Total != 0 {
		t.Errorf("Got(list of another org) = %+v; want empty", got)
	}
	if rec := e.as(t, a.identity(), "GET", "/api/v1/oauth2/token/delegations?role=boss", ""); rec.Code != http.StatusBadRequest {
		t.Errorf("Got(list role=boss) = %d; want 400", rec.Code)
	}
}

func TestTokenExchangeChain(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b, c := e.party(t, "org-1", "a@x.io"), e.party(t, "org-1", "b@x.io"), e.party(t, "org-1", "c@x.io")

	// A delegates to B (/delegate), B exchanges for C.
	rec := e.as(t, a.identity(), "POST", "/api/v1/oauth2/token/delegate", `{"delegateeAgentId":"`+b.agent.AgentID+`","scopes":["agents:read","tokens:read"]}`)
	if rec.Code != http.StatusCreated {
		t.Fatalf("delegate = %d %s", rec.Code, rec.Body)
	}
	ab := decode[domain.DelegateResult](t, rec)
	form := exchangeForm(ab.DelegationToken, c.token)
	form.Set("scope", "agents:read")
	rec = e.exchange(t, c.agent.AgentID, c.cred.ClientSecret, form)
	if rec.Code != http.StatusOK {
		t.Fatalf("exchange B→C = %d %s; want 200", rec.Code, rec.Body)
	}
	res := decode[domain.ExchangeResponse](t, rec)
	if res.IssuedTokenType != domain.TokenTypeAccessToken || res.TokenType != "Bearer" || res.Scope != "agents:read" || res.ExpiresIn <= 0 {
		t.Errorf("Got(exchange response) = %+v", res)
	}
	cc := e.claims(t, res.AccessToken)
	if cc.Subject != c.agent.AgentID || cc.Act == nil || cc.Act.Sub != b.agent.AgentID || cc.Act.Act == nil || cc.Act.Act.Sub != a.agent.AgentID ||
		len(cc.ChainIDs) != 2 || cc.ChainIDs[0] != ab.ChainID || cc.ChainID != cc.ChainIDs[1] || cc.CredentialID != c.cred.CredentialID {
		t.Errorf("Got(C's claims) = %+v; want sub C, act B→A, chain_ids [%s, new]", cc, ab.ChainID)
	}
	if got := e.introspect(t, "org-1", res.AccessToken); got["active"] != true {
		t.Errorf("Got(introspect C's token) = %v; want active", got)
	}

	// Revoking A→B kills B's token and C's, and the chain cannot be replayed.
	if rec := e.as(t, a.identity(), "DELETE", "/api/v1/oauth2/token/delegate/"+ab.ChainID, ""); rec.Code != http.StatusNoContent {
		t.Fatalf("revoke chain = %d %s", rec.Code, rec.Body)
	}
	for name, tok := range map[string]string{"B's delegation token": ab.DelegationToken, "C's exchanged token": res.AccessToken} {
		if got := e.introspect(t, "org-1", tok); got["active"] != false {
			t.Errorf("Got(introspect %s after chain revocation) = %v; want inactive", name, got)
		}
	}
	if rec := e.exchange(t, c.agent.AgentID, c.cred.ClientSecret, exchangeForm(ab.DelegationToken, c.token)); rec.Code != 400 ||
		decode[map[string]string](t, rec)["error"] != "invalid_request" {
		t.Errorf("Got(exchange of a revoked chain) = %d %s; want 400 invalid_request", rec.Code, rec.Body)
	}

	// A→B by exchange; suspending A (an actor) kills the derived tokens.
	rec = e.exchange(t, b.agent.AgentID, b.cred.ClientSecret, exchangeForm(a.token, b.token))
	if rec.Code != http.StatusOK {
		t.Fatalf("exchange A→B = %d %s", rec.Code, rec.Body)
	}
	bTok := decode[domain.ExchangeResponse](t, rec).AccessToken
	rec = e.exchange(t, c.agent.AgentID, c.cred.ClientSecret, exchangeForm(bTok, c.token))
	if rec.Code != http.StatusOK {
		t.Fatalf("exchange B→C = %d %s", rec.Code, rec.Body)
	}
	cTok := decode[domain.ExchangeResponse](t, rec).AccessToken
	// Revoking A's original access token (RFC 7009) cascades to both.
	if rr := e.form(t, "/oauth2/revoke", "org-1", []string{"tokens:read"}, url.Values{"token": {a.token}}.Encode()); rr.Code != http.StatusOK {
		t.Fatalf("revoke = %d", rr.Code)
	}
	for name, tok := range map[string]string{"B's token": bTok, "C's token": cTok} {
		if got := e.introspect(t, "org-1", tok); got["active"] != false {
			t.Errorf("Got(introspect %s after revoking A's token) = %v; want inactive", name, got)
		}
	}
}

func TestTokenExchangeAttacks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b, c := e.party(t, "org-1", "a@x.io"), e.party(t, "org-1", "b@x.io"), e.party(t, "org-1", "c@x.io")
	foreign := e.party(t, "org-2", "f@x.io")
	rec := e.exchange(t, b.agent.AgentID, b.cred.ClientSecret, exchangeForm(a.token, b.token))
	if rec.Code != http.StatusOK {
		t.Fatalf("exchange A→B = %d %s", rec.Code, rec.Body)
	}
	bTok := decode[domain.ExchangeResponse](t, rec).AccessToken

	// Tokens forged with claims we never issue.
	forged := a.claims
	forged.Act = &domain.ActorClaim{Sub: foreign.agent.AgentID}
	forged.ID = "0195f1a2-0000-7000-8000-00000000f00d"
	payload, _ := json.Marshal(forged)
	h, _ := jose.ParseUnverifiedHeader(a.token)
	b64 := base64.RawURLEncoding.EncodeToString
	algNone := b64([]byte(`{"alg":"none","typ":"at+jwt","kid":"`+h.Kid+`"}`)) + "." + b64(payload) + "."
	other, err := jose.GenerateKey(jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := jose.MarshalPrivateKey(other)
	sameKid, err := jose.ParsePrivateKey(jose.ES256, h.Kid, der)
	if err != nil {
		t.Fatal(err)
	}
	wrongSigner, _ := jose.NewSigner(sameKid, "at+jwt")
	wronglySigned, _ := wrongSigner.Sign(forged)
	mayActD := a.claims
	mayActD.ID, mayActD.MayAct = "0195f1a2-0000-7000-8000-00000000d00d", &domain.ActorClaim{Sub: c.agent.AgentID}
	mayActB := mayActD
	mayActB.ID, mayActB.MayAct = "0195f1a2-0000-7000-8000-00000000b00b", &domain.ActorClaim{Sub: b.agent.AgentID}
	shortLived := a.claims
	shortLived.ID, shortLived.ExpiresAt = "0195f1a2-0000-7000-8000-0000000005e0", time.Now().Add(90*time.Second).Unix()

	with := func(f url.Values, kv ...string) url.Values {
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				f.Del(kv[i])
			} else {
				f.Set(kv[i], kv[i+1])
			}
		}
		return f
	}
	tests := []struct {
		name           string
		client, secret string
		form           url.Values
		wantStatus     int
		wantErr        string
	}{
		{"scope the subject lacks", b.agent.AgentID, b.cred.ClientSecret, with(exchangeForm(a.token, b.token), "scope", "agents:write"), 400, "invalid_scope"},
		{"widening audience", b.agent.AgentID, b.cred.ClientSecret, with(exchangeForm(a.token, b.token), "audience", "agentidp https://evil.example"), 400, "invalid_target"},
		{"resource instead of audience", b.agent.AgentID, b.cred.ClientSecret, with(exchangeForm(a.token, b.token), "resource", "https://api.example"), 400, "invalid_target"},
		{"another organisation's subject", b.agent.AgentID, b.cred.ClientSecret, exchangeForm(foreign.token, b.token), 400, "invalid_request"},
		{"another organisation's actor", foreign.agent.AgentID, foreign.cred.ClientSecret, exchangeForm(a.token, foreign.token), 400, "invalid_request"},
		{"delegation token as client secret", b.agent.AgentID, bTok, exchangeForm(a.token, b.token), 401, "invalid_client"},
		{"delegation token as actor token", c.agent.AgentID, c.cred.ClientSecret, exchangeForm(a.token, bTok), 400, "invalid_request"},
		{"actor token of another agent", c.agent.AgentID, c.cred.ClientSecret, exchangeForm(a.token, b.token), 400, "invalid_request"},
		{"alg none subject with forged act", b.agent.AgentID, b.cred.ClientSecret, exchangeForm(algNone, b.token), 400, "invalid_request"},
		{"wrongly signed subject with forged act", b.agent.AgentID, b.cred.ClientSecret, exchangeForm(wronglySigned, b.token), 400, "invalid_request"},
		{"may_act excludes the actor", b.agent.AgentID, b.cred.ClientSecret, exchangeForm(e.forge(t, mayActD), b.token), 400, "invalid_request"},
		{"cycle back to the delegator (policy)", a.agent.AgentID, a.cred.ClientSecret, exchangeForm(bTok, a.token), 400, "invalid_request"},
		{"self exchange (policy)", a.agent.AgentID, a.cred.ClientSecret, exchangeForm(a.token, a.token), 400, "invalid_request"},
		{"missing actor token", b.agent.AgentID, b.cred.ClientSecret, with(exchangeForm(a.token, b.token), "actor_token", ""), 400, "invalid_request"},
		{"wrong subject token type", b.agent.AgentID, b.cred.ClientSecret, with(exchangeForm(a.token, b.token), "subject_token_type", "urn:ietf:params:oauth:token-type:id_token"), 400, "invalid_request"},
		{"refresh token requested", b.agent.AgentID, b.cred.ClientSecret, with(exchangeForm(a.token, b.token), "requested_token_type", "urn:ietf:params:oauth:token-type:refresh_token"), 400, "invalid_request"},
		{"garbage subject", b.agent.AgentID, b.cred.ClientSecret, exchangeForm("garbage", b.token), 400, "invalid_request"},
		{"wrong client secret", b.agent.AgentID, "ais_wrong", exchangeForm(a.token, b.token), 401, "invalid_client"},
	}
	for _, tc := range tests {
		rec := e.exchange(t, tc.client, tc.secret, tc.form)
		if rec.Code != tc.wantStatus || decode[map[string]string](t, rec)["error"] != tc.wantErr {
			t.Errorf("%s: Got(exchange) = %d %s; want %d %s", tc.name, rec.Code, rec.Body, tc.wantStatus, tc.wantErr)
		}
	}
	// A delegation token never authenticates a client at client_credentials either.
	for _, basic := range []bool{false, true} {
		if rec := e.token(t, tokenReq{id: b.agent.AgentID, secret: bTok, basic: basic}); rec.Code != http.StatusUnauthorized {
			t.Errorf("Got(client_credentials with a delegation token as secret, basic=%v) = %d; want 401", basic, rec.Code)
		}
	}

	// may_act naming the actor allows it.
	if rec := e.exchange(t, b.agent.AgentID, b.cred.ClientSecret, exchangeForm(e.forge(t, mayActB), b.token)); rec.Code != http.StatusOK {
		t.Errorf("Got(exchange with may_act = actor) = %d %s; want 200", rec.Code, rec.Body)
	}
	// Never outlives the subject token.
	rec = e.exchange(t, b.agent.AgentID, b.cred.ClientSecret, exchangeForm(e.forge(t, shortLived), b.token))
	if rec.Code != http.StatusOK {
		t.Fatalf("exchange short-lived = %d %s", rec.Code, rec.Body)
	}
	if got := e.claims(t, decode[domain.ExchangeResponse](t, rec).AccessToken); got.ExpiresAt != shortLived.ExpiresAt {
		t.Errorf("Got(exp of exchange of a 90s token) = %d; want %d", got.ExpiresAt, shortLived.ExpiresAt)
	}
	// The policy deny path: the reason reaches the client and auth.failed.
	rec = e.exchange(t, a.agent.AgentID, a.cred.ClientSecret, exchangeForm(bTok, a.token))
	if got := decode[map[string]string](t, rec)["error_description"]; !strings.Contains(got, "already in the delegation chain") {
		t.Errorf("Got(cycle description) = %q; want the policy's reason", got)
	}
}

// denyAll is a delegation policy that refuses everything.
type denyAll struct{}

func (denyAll) Decide(context.Context, domain.DelegationInput) (domain.PolicyDecision, error) {
	return domain.PolicyDecision{Allow: false, Reason: "exchanges are frozen"}, nil
}

func TestTokenExchangeDepthAndPolicy(t *testing.T) {
	t.Parallel()
	e := newEnvFull(t, envOptions{tune: func(s *domain.Settings) { s.MaxDelegationDepth = 2 }})
	a, b, c, d := e.party(t, "org-1", "a@x.io"), e.party(t, "org-1", "b@x.io"), e.party(t, "org-1", "c@x.io"), e.party(t, "org-1", "d@x.io")
	tok := a.token
	for i, next := range []party{b, c} {
		rec := e.exchange(t, next.agent.AgentID, next.cred.ClientSecret, exchangeForm(tok, next.token))
		if rec.Code != http.StatusOK {
			t.Fatalf("hop %d = %d %s", i+1, rec.Code, rec.Body)
		}
		tok = decode[domain.ExchangeResponse](t, rec).AccessToken
	}
	rec := e.exchange(t, d.agent.AgentID, d.cred.ClientSecret, exchangeForm(tok, d.token))
	if rec.Code != 400 || decode[map[string]string](t, rec)["error"] != "invalid_request" || !strings.Contains(rec.Body.String(), "depth") {
		t.Errorf("Got(third hop with max depth 2) = %d %s; want 400 invalid_request (depth)", rec.Code, rec.Body)
	}

	frozen := newEnvFull(t, envOptions{policy: denyAll{}})
	x, y := frozen.party(t, "org-1", "x@x.io"), frozen.party(t, "org-1", "y@x.io")
	js := frozen.js
	cons, err := js.OrderedConsumer(context.Background(), events.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.AuthFailed.Subject()}})
	if err != nil {
		t.Fatal(err)
	}
	rec = frozen.exchange(t, y.agent.AgentID, y.cred.ClientSecret, exchangeForm(x.token, y.token))
	if rec.Code != 400 || !strings.Contains(decode[map[string]string](t, rec)["error_description"], "exchanges are frozen") {
		t.Errorf("Got(exchange under a deny-all policy) = %d %s; want 400 with the policy's reason", rec.Code, rec.Body)
	}
	// The denial is audited with the chain.
	deadline := time.Now().Add(5 * time.Second)
	for {
		msg, err := cons.Next(jetstream.FetchMaxWait(max(time.Until(deadline), time.Millisecond)))
		if err != nil {
			t.Fatalf("no auth.failed event for the denied exchange: %v", err)
		}
		ev, err := events.Decode(msg.Data())
		if err == nil && strings.Contains(string(ev.Data), "exchanges are frozen") && strings.Contains(string(ev.Data), x.agent.AgentID+","+y.agent.AgentID) {
			break
		}
	}
}

func BenchmarkTokenExchange(b *testing.B) {
	e := newEnv(b)
	raw, _ := json.Marshal(events.OrgData{OrganizationID: "org-b", Status: "active", Limits: events.Limits{MaxAgents: -1, MaxTokensPerDay: -1}})
	e.svc.Orgs().Apply("org-b", raw)
	a, c := e.party(b, "org-b", "a@x.io"), e.party(b, "org-b", "c@x.io")
	form := exchangeForm(a.token, c.token)
	if rec := e.exchange(b, c.agent.AgentID, c.cred.ClientSecret, form); rec.Code != 200 {
		b.Fatalf("exchange = %d %s", rec.Code, rec.Body)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if rec := e.exchange(b, c.agent.AgentID, c.cred.ClientSecret, form); rec.Code != 200 {
			b.Fatalf("exchange = %d", rec.Code)
		}
	}
}

// TestRevokingTheDelegatorsCredentialRevokesTheDelegation checks the
// cascade from a credential down the chain: the delegation token carries
// its parent's credential and issue time, so revoking that credential
// revokes the delegation everywhere, offline.
func TestRevokingTheDelegatorsCredentialRevokesTheDelegation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b := e.party(t, "org-1", "a@x.io"), e.party(t, "org-1", "b@x.io")
	rec := e.as(t, a.identity(), "POST", "/api/v1/oauth2/token/delegate",
		`{"delegateeAgentId":"`+b.agent.AgentID+`","scopes":["agents:read"],"ttlSeconds":600}`)
	if rec.Code != http.StatusCreated {
		t.Fatalf("delegate = %d %s", rec.Code, rec.Body)
	}
	tok := decode[domain.DelegateResult](t, rec).DelegationToken
	verify := func() domain.VerifyResult {
		t.Helper()
		body, _ := json.Marshal(map[string]string{"token": tok})
		rec := e.as(t, b.identity(), "POST", "/api/v1/oauth2/token/verify-delegation", string(body))
		if rec.Code != http.StatusOK {
			t.Fatalf("verify-delegation = %d %s", rec.Code, rec.Body)
		}
		return decode[domain.VerifyResult](t, rec)
	}
	if got := verify(); !got.Valid {
		t.Fatalf("Got(verify before) = %+v; want valid", got)
	}
	if rec := e.do(t, "DELETE", "/api/v1/agents/"+a.agent.AgentID+"/credentials/"+a.cred.CredentialID, "org-1", allScopes, ""); rec.Code != http.StatusNoContent {
		t.Fatalf("revoke A's credential = %d %s", rec.Code, rec.Body)
	}
	if got := verify(); got.Valid || got.Reason != "revoked" {
		t.Errorf("Got(verify after revoking the delegator's credential) = %+v; want valid:false revoked", got)
	}
}
