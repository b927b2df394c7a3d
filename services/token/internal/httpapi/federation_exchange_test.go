package httpapi_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/jose"
	"github.com/agentidp/agentidp/libs/natsbus/natstest"
	lib "github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/svcrun"
	"github.com/agentidp/agentidp/services/federation"
	"github.com/agentidp/agentidp/services/token/internal/domain"
	"github.com/agentidp/agentidp/services/token/internal/fedclient"
	"github.com/prometheus/client_golang/prometheus"
)

// partnerIdP plays a partner identity provider: an HTTP server publishing
// the JWKS of one ES256 key (after services/federation/internal/partnertest).
type partnerIdP struct {
	key    *jose.PrivateKey
	issuer string
}

func startPartner(t *testing.T) *partnerIdP {
	t.Helper()
	k, err := jose.GenerateKey(jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	j, _ := k.PublicJWK()
	set, _ := json.Marshal(jose.JWKS{Keys: []jose.JWK{j}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(set)
	}))
	t.Cleanup(srv.Close)
	return &partnerIdP{key: k, issuer: srv.URL}
}

func (p *partnerIdP) token(t *testing.T, sub, aud string) string {
	t.Helper()
	s, err := jose.NewSigner(p.key, "JWT")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Sign(map[string]any{"iss": p.issuer, "sub": sub, "aud": aud, "iat": time.Now().Unix(), "exp": time.Now().Add(5 * time.Minute).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// startFederation runs the real federation service in-process (SQLite,
// embedded NATS) behind an HTTP server and returns it with its URL.
func startFederation(t *testing.T) (*federation.Service, *httptest.Server, *authn.Codec) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	db, err := lib.Open(ctx, lib.Config{Driver: lib.SQLite, URL: filepath.Join(t.TempDir(), "federation.db")})
	if err != nil {
		t.Fatal(err)
	}
	srv := natstest.Start(t)
	nc, js := srv.Connect(t)
	codec, _ := authn.NewCodec(testKey)
	cfg := federation.DefaultConfig()
	cfg.Audience = testIssuer
	cfg.AllowInsecure = true
	cfg.AllowPrivate = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	svc, err := federation.New(ctx, cfg, &svcrun.Deps{Service: "federation", Registry: prometheus.NewRegistry(), DB: db, NATS: nc, JS: js, Codec: codec})
	if err != nil {
		t.Fatalf("federation.New = %v", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = svc.Run(ctx) }()
	hs := httptest.NewServer(svc.Handler())
	t.Cleanup(func() { hs.Close(); cancel(); wg.Wait(); db.Close() })
	return svc, hs, codec
}

func jwtBearerForm(assertion, scope string) url.Values {
	f := url.Values{"grant_type": {domain.GrantTypeJWTBearer}, "assertion": {assertion}}
	if scope != "" {
		f.Set("scope", scope)
	}
	return f
}

// federatedEnv is a token service with the federation service wired in and
// a partner IdP registered, mapping partner subject "partner-bot" to a
// local agent.
func federatedEnv(t *testing.T) (*env, *partnerIdP, domain.Agent, *httptest.Server) {
	t.Helper()
	fed, fedHTTP, codec := startFederation(t)
	partner := startPartner(t)
	e := newKeyEnv(t, keyEnvOptions{federation: fedclient.New(fedHTTP.URL, codec, 2*time.Second)})
	a := e.createAgent(t, "org-1", "fed@example.com", "")
	ctx := context.Background()
	ev, _ := events.New(events.AgentCreated, "token", "org-1", a.AgentID, events.AgentData{AgentID: a.AgentID, OrganizationID: "org-1", Status: "active", At: time.Now()})
	if err := fed.HandleAgentEvent(ctx, ev); err != nil {
		t.Fatal(err)
	}
	// Register the partner as the operator would.
	trust := `{"name":"Partner","issuer":"` + partner.issuer + `","jwksUri":"` + partner.issuer + `/jwks.json","claimMapping":{"subjectClaim":"sub","agentMap":{"partner-bot":"` + a.AgentID + `"}}}`
	req := httptest.NewRequest("POST", "/api/v1/federation/trust", strings.NewReader(trust))
	req.Header.Set("Content-Type", "application/json")
	v, _ := codec.Sign(authn.Identity{Subject: "op", OrgID: "platform", Scopes: []string{"admin:orgs"}, ExpiresAt: time.Now().Add(time.Hour).Unix(),
		Method: req.Method, Path: req.URL.Path})
	req.Header.Set(authn.Header, v)
	rec := httptest.NewRecorder()
	fed.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusCreated {
		t.Fatalf("register partner = %d %s", rec.Code, rec.Body)
	}
	return e, partner, a, fedHTTP
}

func TestJWTBearerFederation(t *testing.T) {
	t.Parallel()
	e, partner, a, fedHTTP := federatedEnv(t)
	var rec *httptest.ResponseRecorder

	cases := []struct {
		name      string
		assertion string
		scope     string
		want      int
		code      string
	}{
		{"good partner token", partner.token(t, "partner-bot", testIssuer), "", 200, ""},
		{"narrowed scope", partner.token(t, "partner-bot", testIssuer), "agents:read", 200, ""},
		{"scope beyond the agent's", partner.token(t, "partner-bot", testIssuer), "admin:orgs", 400, "invalid_scope"},
		{"unmapped subject", partner.token(t, "stranger", testIssuer), "", 400, "invalid_grant"},
		{"wrong audience", partner.token(t, "partner-bot", "https://elsewhere"), "", 400, "invalid_grant"},
		{"garbage", "not-a-jwt", "", 400, "invalid_grant"},
		{"missing assertion", "", "", 400, "invalid_request"},
	}
	for _, c := range cases {
		rec := e.tokenForm(t, jwtBearerForm(c.assertion, c.scope), "")
		if rec.Code != c.want || (c.code != "" && !strings.Contains(rec.Body.String(), `"`+c.code+`"`)) {
			t.Errorf("%s: Got(token) = %d %s; want %d %s", c.name, rec.Code, rec.Body, c.want, c.code)
			continue
		}
		if c.want != 200 {
			continue
		}
		tok := decode[domain.TokenResponse](t, rec)
		b, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok.AccessToken, ".")[1])
		var claims struct {
			domain.AccessClaims
			Fed *domain.FederationClaim `json:"fed"`
		}
		_ = json.Unmarshal(b, &claims)
		if claims.Subject != a.AgentID || claims.OrganizationID != "org-1" || claims.Fed == nil || claims.Fed.Subject != "partner-bot" {
			t.Errorf("%s: Got(claims) = %+v; want the mapped agent with fed claim", c.name, claims)
		}
		if c.scope != "" && tok.Scope != c.scope {
			t.Errorf("%s: Got(scope) = %q; want %q", c.name, tok.Scope, c.scope)
		}
	}

	// Federation down: 503 temporarily_unavailable, not invalid_grant.
	fedHTTP.Close()
	rec = e.tokenForm(t, jwtBearerForm(partner.token(t, "partner-bot", testIssuer), ""), "")
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "temporarily_unavailable") {
		t.Errorf("Got(token with federation down) = %d %s; want 503 temporarily_unavailable", rec.Code, rec.Body)
	}
}

func partnerExchangeForm(subjectToken, subjectType string) url.Values {
	return url.Values{"grant_type": {domain.GrantTypeTokenExchange}, "subject_token": {subjectToken}, "subject_token_type": {subjectType}}
}

// RFC 8693 token exchange of a partner's token (no actor token): the same
// verification and mapping as jwt-bearer, answered in RFC 8693's shape.
func TestTokenExchangeOfPartnerToken(t *testing.T) {
	t.Parallel()
	e, partner, a, _ := federatedEnv(t)
	good := partner.token(t, "partner-bot", testIssuer)
	cases := []struct {
		name string
		form url.Values
		want int
		code string
	}{
		{"partner JWT", partnerExchangeForm(good, domain.TokenTypeJWT), 200, ""},
		{"partner ID token", partnerExchangeForm(partner.token(t, "partner-bot", testIssuer), domain.TokenTypeIDToken), 200, ""},
		{"narrowed scope", func() url.Values {
			f := partnerExchangeForm(partner.token(t, "partner-bot", testIssuer), domain.TokenTypeJWT)
			f.Set("scope", "agents:read")
			return f
		}(), 200, ""},
		{"unmapped subject", partnerExchangeForm(partner.token(t, "stranger", testIssuer), domain.TokenTypeJWT), 400, "invalid_request"},
		{"wrong audience in the partner token", partnerExchangeForm(partner.token(t, "partner-bot", "https://elsewhere"), domain.TokenTypeJWT), 400, "invalid_request"},
		{"garbage subject token", partnerExchangeForm("not-a-jwt", domain.TokenTypeJWT), 400, "invalid_request"},
		{"other audience requested", func() url.Values {
			f := partnerExchangeForm(partner.token(t, "partner-bot", testIssuer), domain.TokenTypeJWT)
			f.Set("audience", "https://elsewhere")
			return f
		}(), 400, "invalid_target"},
		{"refresh token requested", func() url.Values {
			f := partnerExchangeForm(partner.token(t, "partner-bot", testIssuer), domain.TokenTypeJWT)
			f.Set("requested_token_type", "urn:ietf:params:oauth:token-type:refresh_token")
			return f
		}(), 400, "invalid_request"},
		// Access-token type and no actor token: our own delegation
		// exchange, which needs an authenticated client.
		{"not a partner exchange without client authentication", partnerExchangeForm(good, domain.TokenTypeAccessToken), 401, "invalid_client"},
	}
	for _, c := range cases {
		rec := e.tokenForm(t, c.form, "")
		if rec.Code != c.want || (c.code != "" && !strings.Contains(rec.Body.String(), `"`+c.code+`"`)) {
			t.Errorf("%s: Got(token) = %d %s; want %d %s", c.name, rec.Code, rec.Body, c.want, c.code)
			continue
		}
		if c.want != 200 {
			continue
		}
		res := decode[domain.ExchangeResponse](t, rec)
		if res.IssuedTokenType != domain.TokenTypeAccessToken || res.TokenType != "Bearer" || res.ExpiresIn <= 0 {
			t.Errorf("%s: Got(response) = %+v; want an RFC 8693 access-token answer", c.name, res)
		}
		b, _ := base64.RawURLEncoding.DecodeString(strings.Split(res.AccessToken, ".")[1])
		var claims struct {
			domain.AccessClaims
			Fed *domain.FederationClaim `json:"fed"`
		}
		_ = json.Unmarshal(b, &claims)
		if claims.Subject != a.AgentID || claims.Fed == nil || claims.Fed.Subject != "partner-bot" {
			t.Errorf("%s: Got(claims) = %+v; want the mapped agent with fed claim", c.name, claims)
		}
	}
	// Client authentication is optional, but when given it must be the
	// mapped agent's.
	cred := e.createCredential(t, "org-1", a.AgentID, "{}")
	if rec := e.tokenForm(t, partnerExchangeForm(partner.token(t, "partner-bot", testIssuer), domain.TokenTypeJWT), a.AgentID+":"+cred.ClientSecret); rec.Code != 200 {
		t.Errorf("Got(exchange with the mapped agent's credentials) = %d %s; want 200", rec.Code, rec.Body)
	}
	other := e.createAgent(t, "org-1", "other-fed@example.com", "")
	otherCred := e.createCredential(t, "org-1", other.AgentID, "{}")
	if rec := e.tokenForm(t, partnerExchangeForm(partner.token(t, "partner-bot", testIssuer), domain.TokenTypeJWT), other.AgentID+":"+otherCred.ClientSecret); rec.Code != 400 {
		t.Errorf("Got(exchange by another agent) = %d %s; want 400", rec.Code, rec.Body)
	}
	if rec := e.tokenForm(t, partnerExchangeForm(partner.token(t, "partner-bot", testIssuer), domain.TokenTypeJWT), other.AgentID+":wrong"); rec.Code != 401 {
		t.Errorf("Got(exchange with a wrong secret) = %d %s; want 401", rec.Code, rec.Body)
	}
}

func TestJWTBearerDisabled(t *testing.T) {
	t.Parallel()
	e := newKeyEnv(t, keyEnvOptions{})
	rec := e.tokenForm(t, jwtBearerForm("a.b.c", ""), "")
	if rec.Code != 400 || !strings.Contains(rec.Body.String(), "unsupported_grant_type") {
		t.Errorf("Got(jwt-bearer without federation) = %d %s; want 400 unsupported_grant_type", rec.Code, rec.Body)
	}
	d := decode[map[string]any](t, e.do(t, "GET", "/.well-known/oauth-authorization-server", "", nil, ""))
	for _, g := range d["grant_types_supported"].([]any) {
		if g == domain.GrantTypeJWTBearer {
			t.Errorf("Got(discovery grants) = %v; want no jwt-bearer", d["grant_types_supported"])
		}
	}
}
