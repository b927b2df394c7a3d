package httpapi_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/cache"
	"github.com/agentidp/agentidp/libs/jose"
	"github.com/agentidp/agentidp/libs/testkit"
	"github.com/agentidp/agentidp/services/token/internal/domain"
)

const testIssuer = "http://idp.test"

// keyEnvOptions configure newKeyEnv.
type keyEnvOptions struct {
	replay     domain.ReplayCache
	federation domain.FederationExchanger
	tune       func(*domain.Settings)
}

// newKeyEnv is newEnvFull with the client-auth dependencies: a replay
// cache (cache.NewMemory unless given), an optional federation client, and
// http jwksUris accepted.
func newKeyEnv(t testing.TB, o keyEnvOptions) *env {
	t.Helper()
	replay := o.replay
	if replay == nil {
		m := cache.NewMemory(cache.MemoryOptions{})
		t.Cleanup(func() { m.Close() })
		replay = m
	}
	return newEnvFull(t, envOptions{replay: replay, federation: o.federation, tune: func(s *domain.Settings) {
		s.Issuer, s.JWKSAllowInsecure = testIssuer, true
		if o.tune != nil {
			o.tune(s)
		}
	}})
}

func genKey(t testing.TB, alg jose.Alg) (*jose.PrivateKey, string) {
	t.Helper()
	k, err := jose.GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	j, err := k.PublicJWK()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(j)
	return k, string(b)
}

func (e *env) registerKey(t testing.TB, org, agentID, jwk string) domain.ClientKey {
	t.Helper()
	rec := e.do(t, "POST", "/api/v1/agents/"+agentID+"/keys", org, allScopes, `{"jwk":`+jwk+`}`)
	if rec.Code != http.StatusCreated {
		t.Fatalf("register key = %d %s; want 201", rec.Code, rec.Body)
	}
	return decode[domain.ClientKey](t, rec)
}

// assertion signs a client assertion for clientID with k; mod adjusts the
// default claims (iss = sub = clientID, aud = the token endpoint, exp in 1
// minute, a fresh jti).
func assertion(t testing.TB, k *jose.PrivateKey, clientID string, mod func(map[string]any)) string {
	t.Helper()
	now := time.Now()
	claims := map[string]any{"iss": clientID, "sub": clientID, "aud": testIssuer + "/oauth2/token",
		"exp": now.Add(time.Minute).Unix(), "iat": now.Unix(), "jti": fmt.Sprintf("jti-%d", time.Now().UnixNano())}
	if mod != nil {
		mod(claims)
	}
	s, err := jose.NewSigner(k, "JWT")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Sign(claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// unsignedToken builds a token with an arbitrary header and an HMAC (or no)
// signature, for alg-confusion cases.
func unsignedToken(header, claims map[string]any, hmacKey []byte) string {
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	in := enc.EncodeToString(h) + "." + enc.EncodeToString(c)
	if hmacKey == nil {
		return in + "."
	}
	m := hmac.New(sha256.New, hmacKey)
	m.Write([]byte(in))
	return in + "." + enc.EncodeToString(m.Sum(nil))
}

func (e *env) tokenForm(t testing.TB, form url.Values, basic string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("POST", "/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic != "" {
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(basic)))
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

func assertionForm(a string) url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {domain.ClientAssertionTypeJWT}, "client_assertion": {a}}
}

func TestClientKeysAPI(t *testing.T) {
	t.Parallel()
	e := newKeyEnv(t, keyEnvOptions{})
	a := e.createAgent(t, "org-1", "keys@example.com", "")
	_, ecJWK := genKey(t, jose.ES256)
	_, edJWK := genKey(t, jose.EdDSA)
	var priv map[string]any
	_ = json.Unmarshal([]byte(ecJWK), &priv)
	priv["d"] = "AAAA"
	privJWK, _ := json.Marshal(priv)
	p384 := strings.Replace(ecJWK, `"P-256"`, `"P-384"`, 1)
	hsAlg := strings.Replace(ecJWK, `"ES256"`, `"HS256"`, 1)
	path := "/api/v1/agents/" + a.AgentID + "/keys"
	cases := []struct {
		name, org, body string
		scopes          []string
		want            int
	}{
		{"private JWK", "org-1", `{"jwk":` + string(privJWK) + `}`, allScopes, 400},
		{"bad curve", "org-1", `{"jwk":` + p384 + `}`, allScopes, 400},
		{"HS alg on EC key", "org-1", `{"jwk":` + hsAlg + `}`, allScopes, 400},
		{"symmetric", "org-1", `{"jwk":{"kty":"oct","k":"c2VjcmV0"}}`, allScopes, 400},
		{"neither", "org-1", `{}`, allScopes, 400},
		{"both", "org-1", `{"jwk":` + ecJWK + `,"jwksUri":"https://example.com/jwks"}`, allScopes, 400},
		{"unknown field", "org-1", `{"key":` + ecJWK + `}`, allScopes, 400},
		{"jwksUri not https", "org-1", `{"jwksUri":"ftp://example.com/jwks"}`, allScopes, 400},
		{"no scope", "org-1", `{"jwk":` + ecJWK + `}`, []string{"agents:read"}, 403},
		{"other org", "org-2", `{"jwk":` + ecJWK + `}`, allScopes, 404},
		{"no context", "", `{"jwk":` + ecJWK + `}`, allScopes, 401},
		{"ES256", "org-1", `{"jwk":` + ecJWK + `}`, allScopes, 201},
		{"duplicate kid", "org-1", `{"jwk":` + ecJWK + `}`, allScopes, 409},
		{"EdDSA", "org-1", `{"jwk":` + edJWK + `}`, allScopes, 201},
	}
	for _, c := range cases {
		rec := e.do(t, "POST", path, c.org, c.scopes, c.body)
		if rec.Code != c.want {
			t.Errorf("%s: Got(POST keys) = %d %s; want %d", c.name, rec.Code, rec.Body, c.want)
		}
	}
	rec := e.do(t, "GET", path, "org-1", allScopes, "")
	list := decode[struct{ Data []domain.ClientKey }](t, rec)
	if rec.Code != 200 || len(list.Data) != 2 || list.Data[0].Alg != "ES256" || list.Data[0].Status != "active" || list.Data[0].AgentID != a.AgentID {
		t.Fatalf("Got(GET keys) = %d %s; want 2 active keys", rec.Code, rec.Body)
	}
	if rec := e.do(t, "GET", path, "org-2", allScopes, ""); rec.Code != 404 {
		t.Errorf("Got(GET keys other org) = %d; want 404", rec.Code)
	}
	kid := list.Data[0].KeyID
	for i, want := range []int{204, 204} {
		if rec := e.do(t, "DELETE", path+"/"+kid, "org-1", allScopes, ""); rec.Code != want {
			t.Errorf("Got(DELETE #%d) = %d %s; want %d", i, rec.Code, rec.Body, want)
		}
	}
	if rec := e.do(t, "DELETE", path+"/nope", "org-1", allScopes, ""); rec.Code != 404 {
		t.Errorf("Got(DELETE unknown kid) = %d; want 404", rec.Code)
	}
	list = decode[struct{ Data []domain.ClientKey }](t, e.do(t, "GET", path, "org-1", allScopes, ""))
	if list.Data[0].Status != "revoked" || list.Data[0].RevokedAt == nil {
		t.Errorf("Got(revoked key) = %+v; want status revoked", list.Data[0])
	}
	// The operator acts across organisations.
	if rec := e.do(t, "GET", path, "platform", []string{"admin:orgs", "agents:read"}, ""); rec.Code != 200 {
		t.Errorf("Got(GET keys as operator) = %d; want 200", rec.Code)
	}
}

// jwksServer serves a JWKS and counts TCP connections.
func jwksServer(t *testing.T, body string) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write([]byte(body))
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s, &conns
}

func TestClientKeysJWKSURI(t *testing.T) {
	t.Parallel()
	_, j1 := genKey(t, jose.ES256)
	_, j2 := genKey(t, jose.EdDSA)
	set := `{"keys":[` + j1 + `,` + j2 + `,{"kty":"EC","crv":"P-384","x":"AA","y":"AA","kid":"skipped"}]}`

	t.Run("private address refused without a connection", func(t *testing.T) {
		t.Parallel()
		srv, conns := jwksServer(t, set)
		e := newKeyEnv(t, keyEnvOptions{})
		a := e.createAgent(t, "org-1", "uri@example.com", "")
		for _, u := range []string{srv.URL + "/jwks", strings.Replace(srv.URL, "127.0.0.1", "localhost", 1) + "/jwks"} {
			rec := e.do(t, "POST", "/api/v1/agents/"+a.AgentID+"/keys", "org-1", allScopes, `{"jwksUri":"`+u+`"}`)
			if rec.Code != 400 {
				t.Errorf("Got(POST jwksUri %s) = %d %s; want 400", u, rec.Code, rec.Body)
			}
		}
		if n := conns.Load(); n != 0 {
			t.Errorf("Got(connections) = %d; want 0", n)
		}
	})
	t.Run("allow-listed", func(t *testing.T) {
		t.Parallel()
		srv, conns := jwksServer(t, set)
		e := newKeyEnv(t, keyEnvOptions{tune: func(s *domain.Settings) {
			s.JWKSAllowPrivate = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		}})
		a := e.createAgent(t, "org-1", "uri@example.com", "")
		rec := e.do(t, "POST", "/api/v1/agents/"+a.AgentID+"/keys", "org-1", allScopes, `{"jwksUri":"`+srv.URL+`/jwks"}`)
		got := decode[domain.RegisteredClientKeys](t, rec)
		if rec.Code != 201 || len(got.Keys) != 2 || got.JWKSURI == nil || conns.Load() == 0 {
			t.Fatalf("Got(POST allow-listed jwksUri) = %d %s; want 201 with 2 keys", rec.Code, rec.Body)
		}
	})
	t.Run("https required", func(t *testing.T) {
		t.Parallel()
		srv, conns := jwksServer(t, set)
		e := newKeyEnv(t, keyEnvOptions{tune: func(s *domain.Settings) {
			s.JWKSAllowPrivate = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
			s.JWKSAllowInsecure = false
		}})
		a := e.createAgent(t, "org-1", "uri@example.com", "")
		rec := e.do(t, "POST", "/api/v1/agents/"+a.AgentID+"/keys", "org-1", allScopes, `{"jwksUri":"`+srv.URL+`/jwks"}`)
		if rec.Code != 400 || conns.Load() != 0 {
			t.Errorf("Got(POST http jwksUri) = %d, %d connections; want 400, 0", rec.Code, conns.Load())
		}
	})
}

func TestPrivateKeyJWT(t *testing.T) {
	t.Parallel()
	// Many refused assertions of one client in a row: the failed
	// authentication throttle (TestAttackClientSecretBruteForceThrottled)
	// is not what this test looks at.
	e := newKeyEnv(t, keyEnvOptions{tune: func(s *domain.Settings) { s.AuthThrottle.ClientLimit = 1000 }})
	a := e.createAgent(t, "org-1", "pkjwt@example.com", "")
	other := e.createAgent(t, "org-1", "other@example.com", "")
	ecKey, ecJWK := genKey(t, jose.ES256)
	edKey, edJWK := genKey(t, jose.EdDSA)
	e.registerKey(t, "org-1", a.AgentID, ecJWK)
	e.registerKey(t, "org-1", a.AgentID, edJWK)
	unregistered, _ := genKey(t, jose.ES256)
	otherKey, otherJWK := genKey(t, jose.ES256)
	e.registerKey(t, "org-1", other.AgentID, otherJWK)
	id := a.AgentID
	now := time.Now()
	ecPub, _ := ecKey.PublicJWK()
	pubBytes, _ := json.Marshal(ecPub)

	good := assertion(t, ecKey, id, nil)
	cases := []struct {
		name      string
		assertion string
		form      func(url.Values)
		basic     string
		want      int
	}{
		{"ES256", good, nil, "", 200},
		{"EdDSA", assertion(t, edKey, id, nil), nil, "", 200},
		{"aud is the issuer", assertion(t, ecKey, id, func(c map[string]any) { c["aud"] = []string{"x", testIssuer} }), nil, "", 200},
		{"client_id matches", assertion(t, ecKey, id, nil), func(f url.Values) { f.Set("client_id", id) }, "", 200},
		{"replayed", good, nil, "", 401},
		{"wrong aud", assertion(t, ecKey, id, func(c map[string]any) { c["aud"] = "https://elsewhere.example" }), nil, "", 401},
		{"expired", assertion(t, ecKey, id, func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() }), nil, "", 401},
		{"too long lifetime", assertion(t, ecKey, id, func(c map[string]any) { c["exp"] = now.Add(time.Hour).Unix() }), nil, "", 401},
		{"no exp", assertion(t, ecKey, id, func(c map[string]any) { delete(c, "exp") }), nil, "", 401},
		{"iat in the future", assertion(t, ecKey, id, func(c map[string]any) { c["iat"] = now.Add(time.Minute).Unix() }), nil, "", 401},
		{"no jti", assertion(t, ecKey, id, func(c map[string]any) { delete(c, "jti") }), nil, "", 401},
		{"sub differs", assertion(t, ecKey, id, func(c map[string]any) { c["sub"] = other.AgentID }), nil, "", 401},
		{"another client's key", assertion(t, otherKey, id, nil), nil, "", 401},
		{"impersonating with own key", assertion(t, otherKey, id, func(c map[string]any) { c["kid"] = "x" }), nil, "", 401},
		{"unregistered key", assertion(t, unregistered, id, nil), nil, "", 401},
		{"client_id differs", assertion(t, ecKey, id, nil), func(f url.Values) { f.Set("client_id", other.AgentID) }, "", 401},
		{"alg none", unsignedToken(map[string]any{"alg": "none", "kid": ecKey.KID},
			map[string]any{"iss": id, "sub": id, "aud": testIssuer, "exp": now.Add(time.Minute).Unix(), "jti": "n1"}, nil), nil, "", 401},
		{"HS256 with the public key", unsignedToken(map[string]any{"alg": "HS256", "kid": ecKey.KID},
			map[string]any{"iss": id, "sub": id, "aud": testIssuer, "exp": now.Add(time.Minute).Unix(), "jti": "h1"}, pubBytes), nil, "", 401},
		{"garbage", "not.a.jwt", nil, "", 401},
		{"mixed with secret", assertion(t, ecKey, id, nil), func(f url.Values) { f.Set("client_secret", "x") }, "", 400},
		{"mixed with basic", assertion(t, ecKey, id, nil), nil, id + ":x", 400},
		{"wrong assertion type", assertion(t, ecKey, id, nil), func(f url.Values) { f.Set("client_assertion_type", "urn:x") }, "", 400},
	}
	var firstBody string
	for _, c := range cases {
		f := assertionForm(c.assertion)
		if c.form != nil {
			c.form(f)
		}
		rec := e.tokenForm(t, f, c.basic)
		if rec.Code != c.want {
			t.Errorf("%s: Got(token) = %d %s; want %d", c.name, rec.Code, rec.Body, c.want)
			continue
		}
		if c.want == 401 {
			if firstBody == "" {
				firstBody = rec.Body.String()
			}
			if rec.Body.String() != firstBody {
				t.Errorf("%s: Got(body) = %s; want the uniform %s", c.name, rec.Body, firstBody)
			}
		}
		if c.want == 200 {
			tok := decode[domain.TokenResponse](t, rec)
			var claims domain.AccessClaims
			parts := strings.Split(tok.AccessToken, ".")
			b, _ := base64.RawURLEncoding.DecodeString(parts[1])
			_ = json.Unmarshal(b, &claims)
			if claims.Subject != id || claims.OrganizationID != "org-1" {
				t.Errorf("%s: Got(claims) = %+v; want sub %s org-1", c.name, claims, id)
			}
		}
	}
	if !strings.Contains(firstBody, `"invalid_client"`) {
		t.Errorf("Got(401 body) = %s; want invalid_client", firstBody)
	}

	// A revoked key stops working at once.
	rec := e.do(t, "DELETE", "/api/v1/agents/"+id+"/keys/"+edKey.KID, "org-1", allScopes, "")
	if rec.Code != 204 {
		t.Fatalf("revoke key = %d", rec.Code)
	}
	if rec := e.tokenForm(t, assertionForm(assertion(t, edKey, id, nil)), ""); rec.Code != 401 {
		t.Errorf("Got(token with revoked key) = %d; want 401", rec.Code)
	}
	// A suspended agent cannot authenticate with its key.
	if rec := e.do(t, "PATCH", "/api/v1/agents/"+id, "org-1", allScopes, `{"status":"suspended"}`); rec.Code != 200 {
		t.Fatalf("suspend = %d %s", rec.Code, rec.Body)
	}
	if rec := e.tokenForm(t, assertionForm(assertion(t, ecKey, id, nil)), ""); rec.Code != 401 {
		t.Errorf("Got(token of suspended agent) = %d; want 401", rec.Code)
	}

	// Discovery advertises the method.
	d := decode[map[string]any](t, e.do(t, "GET", "/.well-known/openid-configuration", "", nil, ""))
	if !strings.Contains(fmt.Sprint(d["token_endpoint_auth_methods_supported"]), "private_key_jwt") ||
		!strings.Contains(fmt.Sprint(d["token_endpoint_auth_signing_alg_values_supported"]), "EdDSA") {
		t.Errorf("Got(discovery) = %v; want private_key_jwt with signing algs", d)
	}
}

// concurrentAssertions sends the same assertion n times at once and
// returns how many got a token.
func concurrentAssertions(t *testing.T, e *env, a string, n int) int {
	t.Helper()
	var ok atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if rec := e.tokenForm(t, assertionForm(a), ""); rec.Code == 200 {
				ok.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	return int(ok.Load())
}

func TestPrivateKeyJWTReplayConcurrent(t *testing.T) {
	t.Parallel()
	caches := map[string]func(t *testing.T) domain.ReplayCache{
		"memory": func(t *testing.T) domain.ReplayCache {
			c := cache.NewMemory(cache.MemoryOptions{})
			t.Cleanup(func() { c.Close() })
			return c
		},
		"redis": func(t *testing.T) domain.ReplayCache {
			c, err := cache.NewRedis(cache.RedisOptions{URL: testkit.RedisURL(t), Prefix: testkit.RedisPrefix(t)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return c
		},
	}
	for name, mk := range caches {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newKeyEnv(t, keyEnvOptions{replay: mk(t)})
			a := e.createAgent(t, "org-1", "race@example.com", "")
			k, j := genKey(t, jose.ES256)
			e.registerKey(t, "org-1", a.AgentID, j)
			// Warm the client cache so the race is on the replay set alone.
			if rec := e.tokenForm(t, assertionForm(assertion(t, k, a.AgentID, nil)), ""); rec.Code != 200 {
				t.Fatalf("warm-up = %d %s", rec.Code, rec.Body)
			}
			if got := concurrentAssertions(t, e, assertion(t, k, a.AgentID, nil), 50); got != 1 {
				t.Errorf("Got(tokens from 50 identical assertions) = %d; want 1", got)
			}
		})
	}
}

// failingReplay is a replay cache that is down.
type failingReplay struct{}

func (failingReplay) SetNX(context.Context, string, []byte, time.Duration) (bool, error) {
	return false, errors.New("connection refused")
}

func TestPrivateKeyJWTReplayCacheDown(t *testing.T) {
	t.Parallel()
	e := newKeyEnv(t, keyEnvOptions{replay: failingReplay{}})
	a := e.createAgent(t, "org-1", "down@example.com", "")
	k, j := genKey(t, jose.ES256)
	e.registerKey(t, "org-1", a.AgentID, j)
	rec := e.tokenForm(t, assertionForm(assertion(t, k, a.AgentID, nil)), "")
	if rec.Code != 401 || !strings.Contains(rec.Body.String(), "invalid_client") {
		t.Errorf("Got(token with replay cache down) = %d %s; want 401 invalid_client", rec.Code, rec.Body)
	}
	// Secrets keep working.
	cred := e.createCredential(t, "org-1", a.AgentID, "")
	if rec := e.token(t, tokenReq{id: a.AgentID, secret: cred.ClientSecret}); rec.Code != 200 {
		t.Errorf("Got(secret token) = %d; want 200", rec.Code)
	}
}

// rotatingJWKS is an agent's key server whose published set the test
// changes, counting the fetches.
type rotatingJWKS struct {
	*httptest.Server
	mu      sync.Mutex
	body    string
	status  int
	fetches atomic.Int64
}

func newRotatingJWKS(t *testing.T, keys ...string) *rotatingJWKS {
	t.Helper()
	r := &rotatingJWKS{status: http.StatusOK}
	r.publish(keys...)
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		r.fetches.Add(1)
		r.mu.Lock()
		body, status := r.body, r.status
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *rotatingJWKS) publish(keys ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.body, r.status = `{"keys":[`+strings.Join(keys, ",")+`]}`, http.StatusOK
}

func (r *rotatingJWKS) fail(status int, body string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.body, r.status = body, status
}

// An agent that registered its keys through a jwksUri rotates them there:
// an assertion naming a key we do not have fetches the set again (at most
// once per interval per agent), registers what is new and revokes what is
// gone; a failing or empty answer changes nothing.
func TestClientKeysJWKSURIRotation(t *testing.T) {
	t.Parallel()
	// The service's clock moves only when the test says (on top of real
	// time, which the assertions' iat and exp follow), so a slow machine
	// never lets an interval pass during the flood below. The assertions
	// live a minute: four intervals of 10 s stay well inside it.
	const every = 10 * time.Second
	e := newKeyEnv(t, keyEnvOptions{tune: func(s *domain.Settings) {
		s.JWKSAllowPrivate = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		s.ClientJWKSRefreshInterval = every
		s.AuthThrottle.ClientLimit = 1000 // the flood below is about JWKS fetches
	}})
	var offset atomic.Int64
	e.svc.SetClock(func() time.Time { return time.Now().Add(time.Duration(offset.Load())) })
	advance := func() { offset.Add(int64(every)) }
	a := e.createAgent(t, "org-1", "rotating@example.com", "")
	k1, j1 := genKey(t, jose.ES256)
	k2, j2 := genKey(t, jose.EdDSA)
	k3, _ := genKey(t, jose.ES256) // never published
	srv := newRotatingJWKS(t, j1)
	if rec := e.do(t, "POST", "/api/v1/agents/"+a.AgentID+"/keys", "org-1", allScopes, `{"jwksUri":"`+srv.URL+`/jwks"}`); rec.Code != 201 {
		t.Fatalf("register jwksUri = %d %s", rec.Code, rec.Body)
	}
	tokenWith := func(k *jose.PrivateKey) int {
		return e.tokenForm(t, assertionForm(assertion(t, k, a.AgentID, nil)), "").Code
	}
	statuses := func() map[string]string {
		rec := e.do(t, "GET", "/api/v1/agents/"+a.AgentID+"/keys", "org-1", allScopes, "")
		out := map[string]string{}
		for _, k := range decode[struct{ Data []domain.ClientKey }](t, rec).Data {
			out[k.KeyID] = k.Status
		}
		return out
	}
	kid := func(k *jose.PrivateKey) string { j, _ := k.PublicJWK(); return j.Kid }
	if code := tokenWith(k1); code != 200 {
		t.Fatalf("token with the registered key = %d", code)
	}

	// The agent publishes a second key: its first use registers it.
	srv.publish(j1, j2)
	if code := tokenWith(k2); code != 200 {
		t.Fatalf("token with the newly published key = %d; want 200", code)
	}
	if got := statuses(); got[kid(k2)] != domain.ClientKeyActive || got[kid(k1)] != domain.ClientKeyActive {
		t.Fatalf("keys after the first refresh = %v; want both active", got)
	}
	fetches := srv.fetches.Load() // registration + one refresh
	if fetches != 2 {
		t.Fatalf("fetches = %d; want 2", fetches)
	}

	// A flood of assertions under unknown keys within the interval: no
	// more fetches, all refused.
	for i := range 20 {
		if code := tokenWith(k3); code != 401 {
			t.Fatalf("flood %d = %d; want 401", i, code)
		}
	}
	if n := srv.fetches.Load(); n != fetches {
		t.Fatalf("fetches after a flood of unknown kids = %d; want %d", n, fetches)
	}

	// The agent retires k1: the next refresh revokes it.
	advance()
	srv.publish(j2)
	if code := tokenWith(k3); code != 401 {
		t.Fatalf("unpublished key = %d; want 401", code)
	}
	if got := statuses(); got[kid(k1)] != domain.ClientKeyRevoked || got[kid(k2)] != domain.ClientKeyActive {
		t.Fatalf("keys after the agent retired k1 = %v; want k1 revoked, k2 active", got)
	}
	if code := tokenWith(k1); code != 401 {
		t.Fatalf("token with the retired key = %d; want 401", code)
	}

	// A failing or empty key set never removes the keys we have.
	for _, broken := range []func(){
		func() { srv.fail(http.StatusInternalServerError, "oops") },
		func() { srv.publish() },
		func() { srv.fail(http.StatusOK, "not json") },
	} {
		advance()
		broken()
		before := srv.fetches.Load()
		if code := tokenWith(k3); code != 401 {
			t.Fatalf("unknown key = %d; want 401", code)
		}
		if srv.fetches.Load() != before+1 {
			t.Fatal("the unknown kid did not fetch the set again after the interval")
		}
		if code := tokenWith(k2); code != 200 {
			t.Fatalf("token with k2 while the agent's key server is broken = %d; want 200", code)
		}
	}
	if got := statuses(); got[kid(k2)] != domain.ClientKeyActive {
		t.Fatalf("keys after broken answers = %v; want k2 active", got)
	}
}
