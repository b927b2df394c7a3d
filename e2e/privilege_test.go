package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestPrivilegeAgentsWriteCannotBecomePlatformAdmin replays the critical
// chain of issue 12 against `agentidp dev` through the gateway: in the
// bootstrap organisation an agent holding agents:write tries to take over
// the admin agent (a credential for it, a rotation of its credential, its
// own key on it, stripping, suspending or decommissioning it). Every step
// is a 403 and the admin is untouched. Then a scope removal reaches a
// token issued before it: the gateway refuses the token within the time
// any revocation takes, and a fresh token lacks the scope.
func TestPrivilegeAgentsWriteCannotBecomePlatformAdmin(t *testing.T) {
	dev := startDev(t, nil)
	c, adminID, adminSecret := dev.c, dev.adminID, dev.adminSecret
	admin, r := c.token(adminID, adminSecret, "admin:orgs agents:read agents:write tokens:read")
	c.mustStatus(r, http.StatusOK, "admin token")

	newAgent := func(name string, scopes []string) (id, secret, token string) {
		t.Helper()
		return c.bootstrapAgent(t, admin, name, scopes)
	}

	_, _, writer := newAgent("writer", []string{"agents:read", "agents:write"})
	r = c.do(http.MethodGet, "/api/v1/agents/"+adminID+"/credentials", admin, nil)
	c.mustStatus(r, http.StatusOK, "admin lists its credentials")
	var creds struct {
		Data []struct {
			CredentialID string `json:"credentialId"`
		} `json:"data"`
	}
	r.decode(t, &creds)
	if len(creds.Data) != 1 {
		t.Fatalf("admin credentials = %s; want one", r.Body)
	}
	adminPath := "/api/v1/agents/" + adminID
	jwk := map[string]any{"kty": "EC", "crv": "P-256", "kid": "attacker",
		"x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
	for _, step := range []struct {
		what, method, path string
		body               any
	}{
		{"create a credential for the admin", http.MethodPost, adminPath + "/credentials", map[string]any{}},
		{"rotate the admin's credential", http.MethodPost, adminPath + "/credentials/" + creds.Data[0].CredentialID + "/rotate", nil},
		{"register a key on the admin", http.MethodPost, adminPath + "/keys", map[string]any{"jwk": jwk}},
		{"strip the admin's scopes", http.MethodPatch, adminPath, map[string]any{"scopes": []string{"agents:read"}}},
		{"suspend the admin", http.MethodPatch, adminPath, map[string]any{"status": "suspended"}},
		{"decommission the admin", http.MethodDelete, adminPath, nil},
	} {
		r := c.do(step.method, step.path, writer, step.body)
		expectProblem(t, r, http.StatusForbidden, "FORBIDDEN", "agents:write holder: "+step.what)
	}
	// The admin is untouched: its secret, its credential list, its powers.
	admin, r = c.token(adminID, adminSecret, "admin:orgs agents:read")
	c.mustStatus(r, http.StatusOK, "admin token after the attack")
	r = c.do(http.MethodGet, adminPath+"/credentials", admin, nil)
	r.decode(t, &creds)
	if len(creds.Data) != 1 {
		t.Errorf("admin credentials after the attack = %s; want the one it had", r.Body)
	}
	r = c.do(http.MethodGet, "/api/v1/organizations", admin, nil)
	c.mustStatus(r, http.StatusOK, "admin lists organisations after the attack")

	// Scope removal reaches a live token at the gateway.
	admin, r = c.token(adminID, adminSecret, "admin:orgs agents:read agents:write tokens:read")
	c.mustStatus(r, http.StatusOK, "admin token")
	xID, xSecret, xTok := newAgent("x", []string{"agents:read", "tokens:read"})
	introspect := func(token string) response {
		req, _ := http.NewRequest(http.MethodPost, c.base+"/oauth2/introspect", strings.NewReader(url.Values{"token": {token}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+token)
		return c.send(req)
	}
	c.mustStatus(introspect(xTok), http.StatusOK, "x introspects with tokens:read before the change")
	c.mustStatus(c.do(http.MethodPatch, "/api/v1/agents/"+xID, admin, map[string]any{"scopes": []string{"agents:read"}}), http.StatusOK, "remove tokens:read from x")
	var last response
	eventually(t, 2*time.Second, func() bool {
		last = c.do(http.MethodGet, "/api/v1/agents", xTok, nil)
		return last.Status == http.StatusUnauthorized
	}, func() string {
		return fmt.Sprintf("x's old token at the gateway = %d %s; want 401 within 2s of the scope removal", last.Status, last.Body)
	})
	eventually(t, 2*time.Second, func() bool {
		var fresh response
		xTok, fresh = c.token(xID, xSecret, "")
		return fresh.Status == http.StatusOK
	}, func() string { return "x gets no fresh token after the scope removal" })
	c.mustStatus(c.do(http.MethodGet, "/api/v1/agents", xTok, nil), http.StatusOK, "x's fresh token reads agents")
	c.mustStatus(introspect(xTok), http.StatusForbidden, "x's fresh token cannot introspect (tokens:read removed)")
	_, r = c.token(xID, xSecret, "tokens:read")
	c.mustStatus(r, http.StatusBadRequest, "x asks for the removed scope")
}

// TestPrivilegeOperatorRevokesAnotherOrganisationsToken: through the
// gateway, the platform operator's RFC 7009 revocation of a token of
// another organisation takes effect (it may manage that organisation's
// agents, so it may revoke their tokens), while the same request from an
// ordinary agent answers 200 and changes nothing, as RFC 7009 §2.2 has it.
func TestPrivilegeOperatorRevokesAnotherOrganisationsToken(t *testing.T) {
	dev := startDev(t, nil)
	c := dev.c
	admin, r := c.token(dev.adminID, dev.adminSecret, "admin:orgs agents:read agents:write tokens:read")
	c.mustStatus(r, http.StatusOK, "admin token")
	r = c.do(http.MethodPost, "/api/v1/organizations", admin, map[string]any{"name": "Other Org", "slug": "other-org"})
	c.mustStatus(r, http.StatusCreated, "create organisation")
	var org struct {
		OrganizationID string `json:"organizationId"`
	}
	r.decode(t, &org)
	var victim struct {
		AgentID string `json:"agentId"`
	}
	// The token service learns the organisation from its event.
	eventually(t, 5*time.Second, func() bool {
		r = c.do(http.MethodPost, "/api/v1/agents", admin, map[string]any{
			"email": "victim@other.example", "agentType": "custom", "version": "1.0.0", "capabilities": []string{"agents:read"},
			"owner": "team", "deploymentEnv": "production", "scopes": []string{"agents:read"}, "organizationId": org.OrganizationID,
		})
		return r.Status == http.StatusCreated
	}, func() string { return fmt.Sprintf("create agent in the new organisation: %d %s", r.Status, r.Body) })
	r.decode(t, &victim)
	r = c.do(http.MethodPost, "/api/v1/agents/"+victim.AgentID+"/credentials", admin, map[string]any{})
	c.mustStatus(r, http.StatusCreated, "victim credential")
	var cred struct {
		ClientSecret string `json:"clientSecret"`
	}
	r.decode(t, &cred)
	victimTok, r := c.token(victim.AgentID, cred.ClientSecret, "agents:read")
	c.mustStatus(r, http.StatusOK, "victim token")
	c.mustStatus(c.do(http.MethodGet, "/api/v1/agents", victimTok, nil), http.StatusOK, "victim token works")

	revoke := func(bearer, token string) response {
		req, _ := http.NewRequest(http.MethodPost, c.base+"/oauth2/revoke", strings.NewReader(url.Values{"token": {token}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+bearer)
		return c.send(req)
	}
	// An ordinary agent of the bootstrap organisation: 200, nothing changes.
	_, _, stranger := c.bootstrapAgent(t, admin, "stranger", []string{"agents:read", "tokens:read"})
	c.mustStatus(revoke(stranger, victimTok), http.StatusOK, "stranger's revocation of a foreign token")
	c.mustStatus(c.do(http.MethodGet, "/api/v1/agents", victimTok, nil), http.StatusOK, "victim token after the stranger's revocation")

	// The operator: 200, and the token is refused at the gateway.
	c.mustStatus(revoke(admin, victimTok), http.StatusOK, "operator's revocation of a foreign token")
	var last response
	eventually(t, 2*time.Second, func() bool {
		last = c.do(http.MethodGet, "/api/v1/agents", victimTok, nil)
		return last.Status == http.StatusUnauthorized
	}, func() string {
		return fmt.Sprintf("victim token after the operator's revocation: %d %s; want 401", last.Status, last.Body)
	})
}
