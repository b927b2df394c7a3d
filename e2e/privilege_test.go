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
