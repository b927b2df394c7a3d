package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/natsbus/natstest"
	"github.com/agentidp/agentidp/libs/testkit"
)

// TestDelegationChain runs A → B → C through the gateway with real
// binaries (two token services, two gateways): A delegates to B with
// POST /delegate, C exchanges B's delegation token (RFC 8693) for its own
// token carrying the nested act chain; C can call what the narrowed scope
// allows and nothing else; revoking A → B rejects B's and C's tokens at
// both gateways within a second.
func TestDelegationChain(t *testing.T) {
	pgURL := testkit.PostgresURL(t)
	redisURL := testkit.RedisURL(t)
	bin := binaries(t)
	nats := natstest.Start(t)

	prefix := "e2e_" + strings.ToLower(testkit.RandomSuffix(6)) + "_"
	t.Cleanup(func() { dropSchemas(t, pgURL, prefix) })
	issuer := "http://issuer.agentidp.test"
	common := []string{"NATS_URL=" + nats.URL(), "AGENTIDP_INTERNAL_KEY=" + hexKey(testKey), "LOG_LEVEL=warn"}
	tokenEnv := tokenServiceEnv(issuer)
	adminID, adminSecret := bootstrapAdmin(t, bin, pgURL, prefix, issuer)

	var gws []*client
	var gwAddrs []string
	for i := range 2 {
		addr, internal := freeAddr(t), freeAddr(t)
		env := append(append([]string{"HTTP_ADDR=" + addr, "INTERNAL_ADDR=" + internal,
			"DATABASE_URL=" + pgURL, "DATABASE_SCHEMA=" + prefix + "token", "REDIS_URL=" + redisURL}, common...), tokenEnv...)
		p := start(t, fmt.Sprintf("token-%d", i+1), bin+"/token", env)
		waitReady(t, p, "http://"+internal+"/health/ready")
		gwAddr, gwInternal := freeAddr(t), freeAddr(t)
		g := start(t, fmt.Sprintf("gateway-%d", i+1), bin+"/gateway", append([]string{"HTTP_ADDR=" + gwAddr, "INTERNAL_ADDR=" + gwInternal,
			"REDIS_URL=" + redisURL, "GATEWAY_ISSUER=" + issuer, "TOKEN_SERVICE_URL=http://" + addr}, common...))
		waitReady(t, g, "http://"+gwInternal+"/health/ready")
		gws = append(gws, newClient(t, "http://"+gwAddr))
		gwAddrs = append(gwAddrs, gwAddr)
	}
	c := gws[0]
	admin, r := c.token(adminID, adminSecret, "agents:read agents:write tokens:read")
	c.mustStatus(r, http.StatusOK, "admin token")

	type agent struct{ id, secret, token string }
	newAgent := func(name string) agent {
		r := c.do(http.MethodPost, "/api/v1/agents", admin, map[string]any{
			"email": name + "@acme.example", "agentType": "custom", "version": "1.0.0", "capabilities": []string{"agents:read"},
			"owner": "team", "deploymentEnv": "production", "scopes": []string{"agents:read", "tokens:read"},
		})
		c.mustStatus(r, http.StatusCreated, "create agent "+name)
		var a struct {
			AgentID string `json:"agentId"`
		}
		r.decode(t, &a)
		r = c.do(http.MethodPost, "/api/v1/agents/"+a.AgentID+"/credentials", admin, map[string]any{})
		c.mustStatus(r, http.StatusCreated, "credential "+name)
		var cred struct {
			ClientSecret string `json:"clientSecret"`
		}
		r.decode(t, &cred)
		tok, r := c.token(a.AgentID, cred.ClientSecret, "agents:read tokens:read")
		c.mustStatus(r, http.StatusOK, "token "+name)
		return agent{a.AgentID, cred.ClientSecret, tok}
	}
	a, b, cc := newAgent("a"), newAgent("b"), newAgent("c")

	// A → B through POST /delegate (gateway 1).
	r = c.do(http.MethodPost, "/api/v1/oauth2/token/delegate", a.token, map[string]any{
		"delegateeAgentId": b.id, "scopes": []string{"agents:read", "tokens:read"}, "ttlSeconds": 900})
	c.mustStatus(r, http.StatusCreated, "delegate A→B")
	var del struct {
		DelegationToken string `json:"delegationToken"`
		ChainID         string `json:"chainId"`
	}
	r.decode(t, &del)

	// B → C by token exchange (gateway 2), narrowed to agents:read.
	form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token": {del.DelegationToken}, "subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
		"actor_token": {cc.token}, "actor_token_type": {"urn:ietf:params:oauth:token-type:access_token"}, "scope": {"agents:read"}}
	req := mustRequest(t, http.MethodPost, "http://"+gwAddrs[1]+"/oauth2/token", map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	req.SetBasicAuth(url.QueryEscape(cc.id), url.QueryEscape(cc.secret))
	req.Body = ioNopCloser(form.Encode())
	r = gws[1].send(req)
	gws[1].mustStatus(r, http.StatusOK, "exchange B→C")
	var ex struct {
		AccessToken     string `json:"access_token"`
		IssuedTokenType string `json:"issued_token_type"`
		Scope           string `json:"scope"`
	}
	r.decode(t, &ex)
	if ex.Scope != "agents:read" || ex.IssuedTokenType != "urn:ietf:params:oauth:token-type:access_token" {
		t.Errorf("Got(exchange response) = %+v; want scope agents:read, access_token type", ex)
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(ex.AccessToken, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Sub      string   `json:"sub"`
		ChainIDs []string `json:"chain_ids"`
		Act      struct {
			Sub string `json:"sub"`
			Act struct {
				Sub string `json:"sub"`
			} `json:"act"`
		} `json:"act"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	if claims.Sub != cc.id || claims.Act.Sub != b.id || claims.Act.Act.Sub != a.id || !slices.Contains(claims.ChainIDs, del.ChainID) {
		t.Errorf("Got(C's claims) = %+v; want sub C, act B → A, chain_ids containing %s", claims, del.ChainID)
	}

	// C can do what agents:read allows, at both gateways, and nothing else.
	for i, g := range gws {
		g.mustStatus(g.do(http.MethodGet, "/api/v1/agents", ex.AccessToken, nil), http.StatusOK, fmt.Sprintf("gateway-%d: C lists agents", i+1))
		g.mustStatus(g.do(http.MethodGet, "/api/v1/agents", del.DelegationToken, nil), http.StatusOK, fmt.Sprintf("gateway-%d: B lists agents", i+1))
	}
	req = mustRequest(t, http.MethodPost, "http://"+gwAddrs[0]+"/oauth2/introspect", map[string]string{
		"Authorization": "Bearer " + ex.AccessToken, "Content-Type": "application/x-www-form-urlencoded"})
	req.Body = ioNopCloser(url.Values{"token": {a.token}}.Encode())
	c.mustStatus(c.send(req), http.StatusForbidden, "C introspects (tokens:read was narrowed away)")
	r = c.do(http.MethodPost, "/api/v1/oauth2/token/verify-delegation", b.token, map[string]string{"token": ex.AccessToken})
	c.mustStatus(r, http.StatusOK, "verify C's token")
	var v struct {
		Valid bool     `json:"valid"`
		Chain []string `json:"chain"`
	}
	r.decode(t, &v)
	if !v.Valid || !slices.Equal(v.Chain, []string{a.id, b.id, cc.id}) {
		t.Errorf("Got(verify-delegation of C's token) = %+v; want valid chain [A B C]", v)
	}
	// Only the delegator revokes.
	c.mustStatus(c.do(http.MethodDelete, "/api/v1/oauth2/token/delegate/"+del.ChainID, b.token, nil), http.StatusForbidden, "B revokes A→B")

	// A revokes A → B: B's and C's tokens die at both gateways within a second.
	r = c.do(http.MethodDelete, "/api/v1/oauth2/token/delegate/"+del.ChainID, a.token, nil)
	revokedAt := time.Now()
	c.mustStatus(r, http.StatusNoContent, "A revokes A→B")
	var wg sync.WaitGroup
	var mu sync.Mutex
	var samples []time.Duration
	for i, addr := range gwAddrs {
		for name, tok := range map[string]string{"B's delegation token": del.DelegationToken, "C's exchanged token": ex.AccessToken} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					resp, err := gws[i].http.Do(mustRequest(t, http.MethodGet, "http://"+addr+"/api/v1/agents", map[string]string{"Authorization": "Bearer " + tok}))
					if err == nil {
						resp.Body.Close()
						if resp.StatusCode == http.StatusUnauthorized {
							d := time.Since(revokedAt)
							mu.Lock()
							samples = append(samples, d)
							mu.Unlock()
							t.Logf("gateway-%d: %s rejected after %v", i+1, name, d)
							return
						}
					}
					if time.Since(revokedAt) > time.Second {
						t.Errorf("gateway-%d: %s still accepted %v after the chain was revoked", i+1, name, time.Since(revokedAt))
						return
					}
					time.Sleep(10 * time.Millisecond)
				}
			}()
		}
	}
	wg.Wait()
	slices.Sort(samples)
	if len(samples) > 0 {
		t.Logf("chain revocation propagation over %d observations: min %v, max %v", len(samples), samples[0], samples[len(samples)-1])
	}
	// A's own token is untouched; the revoked chain cannot be exchanged again.
	c.mustStatus(c.do(http.MethodGet, "/api/v1/agents", a.token, nil), http.StatusOK, "A's token after revoking its delegation")
	req = mustRequest(t, http.MethodPost, "http://"+gwAddrs[0]+"/oauth2/token", map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	req.SetBasicAuth(url.QueryEscape(cc.id), url.QueryEscape(cc.secret))
	req.Body = ioNopCloser(form.Encode())
	c.mustStatus(c.send(req), http.StatusBadRequest, "exchange of a revoked chain")
}
