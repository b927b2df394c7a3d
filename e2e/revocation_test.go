package e2e

import (
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

// TestRevocationPropagation runs two token services and two gateways over
// one NATS, PostgreSQL and Redis. After each revocation response (a token,
// a credential, an agent suspension) both gateways must reject the revoked
// token within one second; a restarted gateway and one whose Redis is
// unreachable still reject it.
func TestRevocationPropagation(t *testing.T) {
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

	var tokenAddrs []string
	for i := range 2 {
		addr, internal := freeAddr(t), freeAddr(t)
		env := append(append([]string{"HTTP_ADDR=" + addr, "INTERNAL_ADDR=" + internal,
			"DATABASE_URL=" + pgURL, "DATABASE_SCHEMA=" + prefix + "token", "REDIS_URL=" + redisURL}, common...), tokenEnv...)
		p := start(t, fmt.Sprintf("token-%d", i+1), bin+"/token", env)
		waitReady(t, p, "http://"+internal+"/health/ready")
		tokenAddrs = append(tokenAddrs, addr)
	}
	type gw struct {
		name, addr, internal string
		p                    *proc
		c                    *client
	}
	startGateway := func(name, addr, internal, tokenAddr, redis string, ready bool) *gw {
		env := append([]string{"HTTP_ADDR=" + addr, "INTERNAL_ADDR=" + internal, "REDIS_URL=" + redis, "GATEWAY_ISSUER=" + issuer,
			"TOKEN_SERVICE_URL=http://" + tokenAddr}, common...)
		g := &gw{name: name, addr: addr, internal: internal, c: newClient(t, "http://"+addr)}
		g.p = start(t, name, bin+"/gateway", env)
		if ready {
			waitReady(t, g.p, "http://"+internal+"/health/ready")
		} else {
			waitReady(t, g.p, "http://"+internal+"/health/live")
		}
		return g
	}
	gws := []*gw{
		startGateway("gateway-1", freeAddr(t), freeAddr(t), tokenAddrs[0], redisURL, true),
		startGateway("gateway-2", freeAddr(t), freeAddr(t), tokenAddrs[1], redisURL, true),
	}
	c := gws[0].c

	admin, r := c.token(adminID, adminSecret, "agents:read agents:write tokens:read")
	c.mustStatus(r, http.StatusOK, "admin token")
	r = c.do(http.MethodPost, "/api/v1/agents", admin, map[string]any{
		"email": "worker@acme.example", "agentType": "custom", "version": "1.0.0", "capabilities": []string{"agents:read"},
		"owner": "team", "deploymentEnv": "production", "scopes": []string{"agents:read"},
	})
	c.mustStatus(r, http.StatusCreated, "create agent")
	var agent struct {
		AgentID string `json:"agentId"`
	}
	r.decode(t, &agent)
	newCredential := func() (string, string) {
		r := c.do(http.MethodPost, "/api/v1/agents/"+agent.AgentID+"/credentials", admin, map[string]any{})
		c.mustStatus(r, http.StatusCreated, "create credential")
		var cred struct {
			CredentialID string `json:"credentialId"`
			ClientSecret string `json:"clientSecret"`
		}
		r.decode(t, &cred)
		return cred.CredentialID, cred.ClientSecret
	}
	agentToken := func(secret string, via *gw) string {
		tok, r := via.c.token(agent.AgentID, secret, "")
		via.c.mustStatus(r, http.StatusOK, "agent token")
		for _, g := range gws {
			g.c.mustStatus(g.c.do(http.MethodGet, "/api/v1/agents", tok, nil), http.StatusOK, g.name+": agent token works before revocation")
		}
		return tok
	}
	var samples []time.Duration
	var mu sync.Mutex
	// propagation polls every gateway every 10 ms from revokedAt until it
	// rejects tok, and fails if any takes longer than a second.
	propagation := func(what, tok string, revokedAt time.Time) {
		t.Helper()
		var wg sync.WaitGroup
		for _, g := range gws {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					resp, err := g.c.http.Do(mustRequest(t, http.MethodGet, "http://"+g.addr+"/api/v1/agents", map[string]string{"Authorization": "Bearer " + tok}))
					if err == nil {
						resp.Body.Close()
						if resp.StatusCode == http.StatusUnauthorized {
							d := time.Since(revokedAt)
							if got := resp.Header.Get("WWW-Authenticate"); !strings.Contains(got, "token revoked") {
								t.Errorf("%s %s: WWW-Authenticate = %q; want token revoked", g.name, what, got)
							}
							mu.Lock()
							samples = append(samples, d)
							mu.Unlock()
							t.Logf("%s: %s rejected after %v", g.name, what, d)
							return
						}
					}
					if time.Since(revokedAt) > time.Second {
						t.Errorf("%s: %s still accepted %v after the revocation response", g.name, what, time.Since(revokedAt))
						return
					}
					time.Sleep(10 * time.Millisecond)
				}
			}()
		}
		wg.Wait()
	}

	// 1. One token (RFC 7009 through gateway 1).
	_, secret := newCredential()
	tok1 := agentToken(secret, gws[0])
	req := mustRequest(t, http.MethodPost, "http://"+gws[0].addr+"/oauth2/revoke", map[string]string{
		"Authorization": "Bearer " + admin, "Content-Type": "application/x-www-form-urlencoded"})
	req.Body = ioNopCloser(url.Values{"token": {tok1}}.Encode())
	r = c.send(req)
	revokedAt := time.Now()
	c.mustStatus(r, http.StatusOK, "revoke token")
	propagation("revoked token", tok1, revokedAt)

	// 2. A credential (its tokens, issued through the other gateway).
	credID, secret2 := newCredential()
	tok2 := agentToken(secret2, gws[1])
	r = c.do(http.MethodDelete, "/api/v1/agents/"+agent.AgentID+"/credentials/"+credID, admin, nil)
	revokedAt = time.Now()
	c.mustStatus(r, http.StatusNoContent, "revoke credential")
	propagation("token of revoked credential", tok2, revokedAt)

	// 3. The agent (suspension).
	_, secret3 := newCredential()
	tok3 := agentToken(secret3, gws[1])
	r = c.do(http.MethodPatch, "/api/v1/agents/"+agent.AgentID, admin, map[string]any{"status": "suspended"})
	revokedAt = time.Now()
	c.mustStatus(r, http.StatusOK, "suspend agent")
	propagation("token of suspended agent", tok3, revokedAt)

	slices.Sort(samples)
	p99 := samples[min(len(samples)-1, len(samples)*99/100)]
	t.Logf("revocation propagation over %d gateway observations: min %v, max %v, p99 %v", len(samples), samples[0], samples[len(samples)-1], p99)

	// Reactivation: new tokens work, the old ones stay revoked.
	r = c.do(http.MethodPatch, "/api/v1/agents/"+agent.AgentID, admin, map[string]any{"status": "active"})
	c.mustStatus(r, http.StatusOK, "reactivate agent")
	eventually(t, 5*time.Second, func() bool {
		tok, r := gws[1].c.token(agent.AgentID, secret3, "")
		return r.Status == http.StatusOK && gws[0].c.do(http.MethodGet, "/api/v1/agents", tok, nil).Status == http.StatusOK
	}, func() string { return "token issued after reactivation not accepted" })
	for _, g := range gws {
		g.c.mustStatus(g.c.do(http.MethodGet, "/api/v1/agents", tok3, nil), http.StatusUnauthorized, g.name+": pre-suspension token after reactivation")
	}

	// A restarted gateway loads the revocations before it is ready.
	gws[1].p.stop()
	gws[1] = startGateway("gateway-2-restarted", gws[1].addr, gws[1].internal, tokenAddrs[1], redisURL, true)
	for _, tok := range []string{tok1, tok2, tok3} {
		gws[1].c.mustStatus(gws[1].c.do(http.MethodGet, "/api/v1/agents", tok, nil), http.StatusUnauthorized, "restarted gateway, revoked token")
	}

	// A gateway whose Redis is unreachable still enforces revocations.
	noRedis := startGateway("gateway-no-redis", freeAddr(t), freeAddr(t), tokenAddrs[0], "redis://"+freeAddr(t)+"/0", false)
	eventually(t, 15*time.Second, func() bool {
		return noRedis.c.do(http.MethodGet, "/api/v1/agents", admin, nil).Status == http.StatusOK
	}, func() string { return "gateway without redis never served the admin token" })
	for _, tok := range []string{tok1, tok2, tok3} {
		noRedis.c.mustStatus(noRedis.c.do(http.MethodGet, "/api/v1/agents", tok, nil), http.StatusUnauthorized, "gateway without redis, revoked token")
	}

	// Introspection through the gateway agrees, on both token replicas.
	for _, g := range gws {
		req := mustRequest(t, http.MethodPost, "http://"+g.addr+"/oauth2/introspect", map[string]string{
			"Authorization": "Bearer " + admin, "Content-Type": "application/x-www-form-urlencoded"})
		req.Body = ioNopCloser(url.Values{"token": {tok1}}.Encode())
		r := g.c.send(req)
		if r.Status != http.StatusOK || strings.TrimSpace(string(r.Body)) != `{"active":false}` {
			t.Errorf("%s: introspect revoked token = %d %s; want {\"active\":false}", g.name, r.Status, r.Body)
		}
	}
	// Without tokens:read the gateway's policy refuses introspection.
	agentTok, _ := gws[0].c.token(agent.AgentID, secret3, "")
	req = mustRequest(t, http.MethodPost, "http://"+gws[0].addr+"/oauth2/introspect", map[string]string{
		"Authorization": "Bearer " + agentTok, "Content-Type": "application/x-www-form-urlencoded"})
	req.Body = ioNopCloser(url.Values{"token": {tok1}}.Encode())
	gws[0].c.mustStatus(gws[0].c.send(req), http.StatusForbidden, "introspect without tokens:read")
}
